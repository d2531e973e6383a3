"""The router: retries that honour Retry-After, circuit breakers, strategies, timeouts, stream failover.

Time is a ManualClock: waits are recorded instead of slept, cooldowns pass when a test says so.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import pytest

from aiapp.config import BreakerPolicy, Deployment, Limits, RetryPolicy, Route, Settings
from aiapp.errors import (
    AllDeploymentsFailedError,
    BadRequestError,
    CircuitOpenError,
    ProviderServerError,
    RateLimitError,
)
from aiapp.gateway import Gateway, ManualClock, Model, PriceTable, RouteDeployment, RouteModel, iter_sync
from aiapp.testing import FakeModel, StubServer
from aiapp.types import CallOptions, Completion, Message, StreamChunk

pytest_plugins = ["gateway_fixtures"]

HI = [Message.user("hi")]


def down(name: str) -> FakeModel:
    """A deployment that always answers 503."""
    return FakeModel(name=name, default=ProviderServerError("down", status=503))


def up(name: str, text: str = "ok") -> FakeModel:
    return FakeModel(name=name, default=text)


class Fixed(random.Random):
    """A 'random' source that always says 0.5: no jitter surprises, no latency exploration."""

    def random(self) -> float:
        return 0.5


# -- retries and Retry-After ----------------------------------------------------------------------


def test_retry_after_is_honoured_before_retrying(clock: ManualClock) -> None:
    fake = FakeModel([RateLimitError("slow down", status=429, retry_after=2.5), "ok"], name="only")
    route = RouteModel(
        "r", [("only", fake)], retries=RetryPolicy(attempts=2, backoff_s=0.1, jitter=False), clock=clock
    )
    reply = route.complete(HI)
    assert reply.text == "ok" and reply.attempts == 2 and reply.tried == ("only", "only")
    assert clock.sleeps == [2.5]  # the provider's wait, not the 0.1 s backoff


def test_a_retry_after_beyond_max_wait_goes_back_to_the_caller(clock: ManualClock) -> None:
    fake = FakeModel([RateLimitError("come back later", status=429, retry_after=120)], name="only")
    route = RouteModel("r", [("only", fake)], retries=RetryPolicy(attempts=3, max_wait_s=30), clock=clock)
    with pytest.raises(RateLimitError) as info:
        route.complete(HI)
    assert info.value.retry_after == 120 and info.value.route == "r"
    assert clock.sleeps == [] and fake.call_count == 1


def test_backoff_doubles_with_jitter(clock: ManualClock) -> None:
    fake = FakeModel([ProviderServerError("x", status=500)] * 3 + ["ok"], name="only")
    route = RouteModel(
        "r",
        [("only", fake)],
        retries=RetryPolicy(attempts=3, backoff_s=1.0, jitter=True),
        breaker=BreakerPolicy(failures=0),
        clock=clock,
        rng=random.Random(7),
    )
    assert route.complete(HI).text == "ok"
    assert len(clock.sleeps) == 3
    for wait, base in zip(clock.sleeps, (1.0, 2.0, 4.0), strict=True):
        assert base / 2 <= wait <= base


def test_retry_after_holds_a_deployment_for_every_request(clock: ManualClock) -> None:
    primary = FakeModel([RateLimitError("slow down", status=429, retry_after=10)], name="p", default="from p")
    backup = up("b", "from b")
    route = RouteModel("r", [("p", primary), ("b", backup)], clock=clock)
    assert route.complete(HI).text == "from b"
    second = route.complete(HI)
    assert second.text == "from b" and second.tried == ("b",)  # p is held: no request sent
    assert primary.call_count == 1
    clock.advance(10)
    assert route.complete(HI).text == "from p"


def test_non_retryable_errors_stop_at_once_and_do_not_trip_the_breaker(clock: ManualClock) -> None:
    primary = FakeModel(name="p", default=BadRequestError("bad", status=400))
    backup = up("b")
    route = RouteModel("r", [("p", primary), ("b", backup)], retries=RetryPolicy(attempts=2), clock=clock)
    for _ in range(5):
        with pytest.raises(BadRequestError):
            route.complete(HI)
    assert backup.call_count == 0 and clock.sleeps == []
    assert route.health.get("p").state == "closed"


# -- circuit breakers -----------------------------------------------------------------------------


def test_a_failing_primary_is_cooled_down_so_requests_stop_burning_attempts(clock: ManualClock) -> None:
    primary, backup = down("p"), up("b")
    route = RouteModel(
        "r", [("p", primary), ("b", backup)], breaker=BreakerPolicy(failures=3, cooldown_s=30), clock=clock
    )
    replies = [route.complete(HI) for _ in range(20)]
    assert all(r.text == "ok" for r in replies)
    assert primary.call_count == 3  # then the breaker opened: 17 requests went straight to the backup
    assert replies[-1].tried == ("b",) and replies[-1].attempts == 1
    assert route.health.get("p").state == "open" and route.health.get("p").opened == 1


def test_a_single_deployment_route_fails_fast_while_its_breaker_is_open(clock: ManualClock) -> None:
    primary = down("p")
    route = RouteModel("r", [("p", primary)], breaker=BreakerPolicy(failures=3, cooldown_s=30), clock=clock)
    for _ in range(3):
        with pytest.raises(ProviderServerError):
            route.complete(HI)
    with pytest.raises(CircuitOpenError) as info:
        route.complete(HI)
    assert primary.call_count == 3  # nothing sent
    assert info.value.retry_after == pytest.approx(30)
    assert "circuit open after 3 consecutive failures" in str(info.value)
    assert "route 'r', deployment 'p'" in str(info.value)


def test_breaker_half_open_probe_closes_on_success_and_reopens_on_failure(clock: ManualClock) -> None:
    primary = FakeModel([ProviderServerError("x", status=500)] * 4, name="p", default="p is back")
    backup = up("b", "from b")
    route = RouteModel(
        "r", [("p", primary), ("b", backup)], breaker=BreakerPolicy(failures=3, cooldown_s=30), clock=clock
    )
    for _ in range(3):
        route.complete(HI)
    health = route.health.get("p")
    assert health.state == "open"
    clock.advance(29)
    assert route.complete(HI).tried == ("b",)  # still cooling down
    clock.advance(1)
    probe = route.complete(HI)  # the half-open probe fails (4th scripted error): open again
    assert probe.tried == ("p", "b") and health.state == "open" and primary.call_count == 4
    assert route.complete(HI).tried == ("b",)
    clock.advance(30)
    recovered = route.complete(HI)
    assert recovered.text == "p is back" and recovered.tried == ("p",)
    assert health.state == "closed" and health.recovered == 1 and health.opened == 1


def test_only_one_probe_goes_out_while_half_open(clock: ManualClock) -> None:
    route = RouteModel("r", [("p", up("p"))], breaker=BreakerPolicy(failures=1, cooldown_s=10), clock=clock)
    health = route.health.get("p")
    health.failure(route.breaker)
    clock.advance(10)
    first = health.admit(route.breaker)
    second = health.admit(route.breaker)
    assert first.ok and first.probe
    assert not second.ok and "probe request is in flight" in second.reason
    clock.advance(10)  # a probe that never reported back frees its slot after a cooldown
    assert health.admit(route.breaker).probe


def test_breaker_state_is_shared_by_routes_of_one_gateway(
    clock: ManualClock, scripted: dict[str, FakeModel]
) -> None:
    scripted["x/primary"] = down("x/primary")
    scripted["x/backup"] = up("x/backup")
    deployments = [
        Deployment(model="x/primary", provider="fixture-scripted"),
        Deployment(model="x/backup", provider="fixture-scripted"),
    ]
    settings = Settings(routes={"a": Route(deployments=deployments), "b": Route(deployments=deployments)})
    gw = Gateway(settings, clock=clock)
    for _ in range(3):
        assert gw.complete("hi", model="a").text == "ok"
    reply = gw.complete("hi", model="b")
    assert reply.tried == ("x/backup",) and scripted["x/primary"].call_count == 3
    [span] = gw.tracer.store.trace(reply.trace_id)  # type: ignore[union-attr,arg-type]
    assert span.attributes["skipped"] == {"x/primary": "CircuitOpenError"}
    assert gw.health.snapshot()["x/primary"]["state"] == "open"


def test_all_failed_lists_skipped_deployments_too(clock: ManualClock) -> None:
    route = RouteModel("r", [("p", down("p")), ("q", down("q"))], clock=clock)
    for _ in range(3):
        with pytest.raises(AllDeploymentsFailedError):
            route.complete(HI)
    with pytest.raises(AllDeploymentsFailedError) as info:
        route.complete(HI)
    assert [type(f.error).__name__ for f in info.value.failures] == ["CircuitOpenError", "CircuitOpenError"]


# -- strategies -----------------------------------------------------------------------------------


def test_weighted_strategy_splits_traffic_by_weight(clock: ManualClock) -> None:
    a, b = up("a"), up("b")
    route = RouteModel(
        "r", [RouteDeployment("a", a, weight=3), RouteDeployment("b", b, weight=1)], strategy="weighted", clock=clock,
        rng=random.Random(42),
    )  # fmt: skip
    for _ in range(400):
        route.complete(HI)
    assert 0.65 < a.call_count / 400 < 0.85 and a.call_count + b.call_count == 400


def test_latency_strategy_measures_each_then_prefers_the_fastest(clock: ManualClock) -> None:
    a, b = up("a"), up("b")
    route = RouteModel("r", [("a", a), ("b", b)], strategy="latency", clock=clock, rng=Fixed())
    route.health.get("a").success(latency_ms=50.0)
    assert route.complete(HI).deployment == "b"  # unmeasured first, so it gets measured
    route.health.get("b").success(latency_ms=500.0)
    route.health.get("b").success(latency_ms=500.0)
    assert route.health.get("b").latency_ms is not None and route.health.get("b").latency_ms > 50
    assert route.complete(HI).deployment == "a"


def test_cost_strategy_prefers_the_cheapest_for_this_request(clock: ManualClock) -> None:
    dear, cheap, unknown = up("m/dear"), up("m/cheap"), up("m/unknown")
    prices = PriceTable({"m/dear": (10.0, 30.0), "m/cheap": (0.1, 0.4)})
    route = RouteModel(
        "r", [("u", unknown), ("d", dear), ("c", cheap)], strategy="cost", prices=prices, clock=clock
    )
    assert route.complete(HI).deployment == "c"
    cheap.push(ProviderServerError("x", status=500))
    assert route.complete(HI).tried == ("c", "d")  # then the next cheapest; unknown prices last


# -- deployment limits ----------------------------------------------------------------------------


def test_a_deployment_at_its_rpm_limit_is_skipped(clock: ManualClock) -> None:
    a, b = up("a", "from a"), up("b", "from b")
    route = RouteModel(
        "r", [RouteDeployment("a", a, limits=Limits(rpm=2)), RouteDeployment("b", b)], clock=clock
    )
    assert [route.complete(HI).text for _ in range(3)] == ["from a", "from a", "from b"]
    clock.advance(60)
    assert route.complete(HI).text == "from a"
    assert route.health.get("a").state == "closed"  # a local limit is not a failure


# -- timeouts -------------------------------------------------------------------------------------


class Slow(Model):
    """Never answers in time."""

    name = "slow"

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        await asyncio.sleep(30)
        return Completion(text="too late")


async def test_a_slow_deployment_is_cut_at_its_timeout_and_fails_over() -> None:
    backup = up("b", "from b")
    route = RouteModel("r", [RouteDeployment("slow", Slow(), timeout_s=0.2), RouteDeployment("b", backup)])
    reply = await route.acomplete(HI)
    assert reply.text == "from b" and reply.tried == ("slow", "b")


async def test_the_route_deadline_bounds_the_whole_call() -> None:
    backup = up("b", "from b")
    route = RouteModel("r", [("slow", Slow()), ("b", backup)], timeout_s=0.2)
    with pytest.raises(AllDeploymentsFailedError, match=r"the route.s deadline of 0\.2s passed") as info:
        await route.acomplete(HI)
    assert type(info.value.failures[0].error).__name__ == "ProviderTimeoutError"
    assert backup.call_count == 0


def test_each_attempt_gets_what_is_left_of_the_deadline(clock: ManualClock) -> None:
    fake = up("only")
    route = RouteModel("r", [("only", fake)], timeout_s=5, clock=clock)
    route.complete(HI, CallOptions(timeout_s=60, temperature=0))
    sent = fake.last_call.options
    assert sent.timeout_s is not None and sent.timeout_s <= 5 and sent.temperature == 0


def test_no_wait_past_the_deadline(clock: ManualClock) -> None:
    fake = FakeModel([RateLimitError("later", status=429, retry_after=20)], name="only")
    route = RouteModel("r", [("only", fake)], timeout_s=10, retries=RetryPolicy(attempts=3), clock=clock)
    with pytest.raises(RateLimitError):
        route.complete(HI)
    assert clock.sleeps == []


# -- streams --------------------------------------------------------------------------------------


def test_streams_fail_over_before_the_first_token_and_feed_the_breaker(clock: ManualClock) -> None:
    primary, backup = down("p"), up("b", "streamed from backup")
    route = RouteModel("r", [("p", primary), ("b", backup)], clock=clock)
    for _ in range(4):
        tried: list[str] = []
        text = "".join(c.delta for c in iter_sync(route.astream(HI, tried=tried)))
        assert text == "streamed from backup"
    assert tried == ["b"] and primary.call_count == 3  # the breaker opened after three streams


def test_streams_honour_retry_after_before_the_first_token(clock: ManualClock) -> None:
    fake = FakeModel([RateLimitError("wait", status=429, retry_after=1.5), "a b c"], name="only")
    route = RouteModel("r", [("only", fake)], retries=RetryPolicy(attempts=1), clock=clock)
    assert "".join(c.delta for c in route.stream(HI)) == "a b c"
    assert clock.sleeps == [1.5]


class BreaksMidStream(Model):
    name = "breaks"

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(delta="partial ")
        raise ProviderServerError("connection reset", status=502)


def test_a_stream_that_breaks_after_the_first_token_raises_and_counts(clock: ManualClock) -> None:
    backup = up("b")
    route = RouteModel("r", [("x", BreaksMidStream()), ("b", backup)], clock=clock)
    seen: list[str] = []
    with pytest.raises(ProviderServerError) as info:
        for chunk in route.stream(HI):
            seen.append(chunk.delta)
    assert seen == ["partial "] and backup.call_count == 0  # no splicing of two replies
    assert info.value.deployment == "x"
    assert route.health.get("x").snapshot()["failures"] == 1


async def test_async_streams_fail_over_and_break_the_same_way(clock: ManualClock) -> None:
    route = RouteModel("r", [("p", down("p")), ("b", up("b", "x y"))], clock=clock)
    assert "".join([c.delta async for c in route.astream(HI)]) == "x y"
    broken = RouteModel("r2", [("x", BreaksMidStream()), ("b", up("b"))], clock=clock)
    with pytest.raises(ProviderServerError):
        async for _ in broken.astream(HI):
            pass


async def test_async_complete_retries_with_the_clock(clock: ManualClock) -> None:
    fake = FakeModel([RateLimitError("wait", status=429, retry_after=3), "ok"], name="only")
    route = RouteModel("r", [("only", fake)], retries=RetryPolicy(attempts=1), clock=clock)
    assert (await route.acomplete(HI)).text == "ok"
    assert clock.sleeps == [3]


# -- against the stub server: real provider errors, real Retry-After headers ----------------------


def test_stub_429_retry_after_header_is_honoured(stub: StubServer, clock: ManualClock) -> None:
    route = Route(
        deployments=[Deployment(model="vllm/stub-model", api_base=stub.base_url)],
        retries=RetryPolicy(attempts=1, backoff_s=0.01, jitter=False),
    )
    gw = Gateway(Settings(routes={"s": route}), clock=clock)
    stub.inject("429", retry_after=3)
    reply = gw.complete("hello", model="s")
    assert reply.text == "stub reply: hello" and reply.attempts == 2
    assert clock.sleeps == [3.0]
    [span] = gw.tracer.store.trace(reply.trace_id)  # type: ignore[union-attr,arg-type]
    assert span.attributes["retry_waits_s"] == [3.0]


def test_stub_timeouts_and_garbage_fail_over_and_open_the_breaker(
    stub: StubServer, clock: ManualClock
) -> None:
    route = Route(
        deployments=[
            Deployment(model="vllm/primary", api_base=stub.base_url, timeout_s=0.3),
            Deployment(model="vllm/backup", api_base=stub.base_url),
        ],
        breaker=BreakerPolicy(failures=2, cooldown_s=60),
    )
    gw = Gateway(Settings(routes={"s": route}), clock=clock)
    primary, backup = f"vllm/primary@{stub.base_url}", f"vllm/backup@{stub.base_url}"
    stub.inject("timeout", model="primary", seconds=2)
    stub.inject("garbage", model="primary")
    replies = [gw.complete("hi", model="s") for _ in range(3)]
    assert [r.tried for r in replies] == [(primary, backup), (primary, backup), (backup,)]
    state = gw.health.snapshot()[primary]
    assert state["state"] == "open" and state["failures"] == 2
    assert stub.stats()["faults_injected"] == 2
