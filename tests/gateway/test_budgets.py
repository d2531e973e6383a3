"""Budgets refuse before spending (also under concurrency), persist across restarts; rpm/tpm limits."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aiapp.config import (
    Budget,
    BudgetSettings,
    CacheSettings,
    Deployment,
    Limits,
    Price,
    RetryPolicy,
    Route,
    Settings,
)
from aiapp.errors import (
    BudgetExceededError,
    ConfigError,
    LimitExceededError,
    ProviderServerError,
    RateLimitError,
)
from aiapp.gateway import Gateway, ManualClock
from aiapp.gateway.budgets import BudgetLedger, Claim, period_of
from aiapp.testing import FakeModel
from aiapp.types import Completion, Usage

pytest_plugins = ["gateway_fixtures"]

# $0.001 per output token, input free: a call with max_tokens=10 may cost at most $0.01.
PRICE = Price(input_per_mtok=0.0, output_per_mtok=1000.0)


def costing(cost: float, tokens: int = 5) -> Completion:
    return Completion(text="ok", usage=Usage(input_tokens=tokens, output_tokens=tokens, cost_usd=cost))


def route_gateway(
    scripted: dict[str, FakeModel],
    fake: FakeModel,
    *,
    clock: ManualClock | None = None,
    budget: Budget | None = None,
    limits: Limits | None = None,
    cache: CacheSettings | None = None,
) -> Gateway:
    scripted["x/m"] = fake
    route = Route(
        deployments=[Deployment(model="x/m", provider="fixture-scripted")],
        budget=budget,
        limits=limits,
        retries=RetryPolicy(attempts=0),
    )
    settings = Settings(routes={"paid": route}, pricing={"x/m": PRICE}, cache=cache)
    return Gateway(settings, clock=clock or ManualClock())


def test_a_route_budget_refuses_before_spending(scripted: dict[str, FakeModel]) -> None:
    fake = FakeModel(default=costing(0.004))
    gw = route_gateway(scripted, fake, budget=Budget(limit_usd=0.02))
    for _ in range(3):  # reserve $0.01 each, spend $0.004 each
        gw.complete("hi", model="paid", max_tokens=10)
    with pytest.raises(BudgetExceededError) as info:
        gw.complete("hi", model="paid", max_tokens=10)
    err = info.value
    assert fake.call_count == 3  # the fourth call never reached the model
    assert (err.scope, err.name, err.limit_usd, err.window) == ("route", "paid", 0.02, "daily")
    assert err.spent_usd == pytest.approx(0.012) and err.needed_usd == pytest.approx(0.01)
    assert "route 'paid' is over its daily budget: spent $0.0120 of $0.02" in str(err)
    assert "refused before sending" in str(err)
    [span] = gw.tracer.store.recent(1)  # type: ignore[union-attr]
    assert span.status == "error" and "BudgetExceededError" in (span.error or "")


async def test_concurrent_async_calls_cannot_overspend(scripted: dict[str, FakeModel]) -> None:
    fake = FakeModel(default=costing(0.01))
    gw = route_gateway(scripted, fake, budget=Budget(limit_usd=0.05))
    results = await asyncio.gather(
        *(gw.acomplete("hi", model="paid", max_tokens=10) for _ in range(12)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(refused) == 7 and fake.call_count == 5
    ledger = BudgetLedger(gw.settings.home / "budgets.db", clock=gw.clock)
    spent, held = ledger.spent("route", "paid")
    assert spent == pytest.approx(0.05) and held == 0


def test_concurrent_threads_cannot_overspend(scripted: dict[str, FakeModel]) -> None:
    fake = FakeModel(default=costing(0.01))
    gw = route_gateway(scripted, fake, budget=Budget(limit_usd=0.05))

    def call() -> str:
        try:
            return gw.complete("hi", model="paid", max_tokens=10).text
        except BudgetExceededError:
            return "refused"

    assert gw.tracer is not None  # open the trace store first: its lazy creation is not thread-safe
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda _: call(), range(12)))
    assert outcomes.count("ok") == 5 and fake.call_count == 5


def test_spending_survives_a_restart(scripted: dict[str, FakeModel]) -> None:
    gw = route_gateway(scripted, FakeModel(default=costing(0.01)), budget=Budget(limit_usd=0.02))
    gw.complete("hi", model="paid", max_tokens=10)
    gw.complete("hi", model="paid", max_tokens=10)
    gw.close()
    restarted = route_gateway(scripted, FakeModel(default=costing(0.01)), budget=Budget(limit_usd=0.02))
    with pytest.raises(BudgetExceededError):
        restarted.complete("hi", model="paid", max_tokens=10)


def test_a_daily_budget_starts_again_the_next_day(scripted: dict[str, FakeModel], clock: ManualClock) -> None:
    gw = route_gateway(scripted, FakeModel(default=costing(0.01)), clock=clock, budget=Budget(limit_usd=0.01))
    gw.complete("hi", model="paid", max_tokens=10)
    with pytest.raises(BudgetExceededError):
        gw.complete("hi", model="paid", max_tokens=10)
    clock.advance(86_400)
    assert gw.complete("hi", model="paid", max_tokens=10).text == "ok"


def test_windows_are_utc_periods() -> None:
    at = 1_800_000_000.0  # 2027-01-15 08:00 UTC
    assert period_of("daily", at) == "2027-01-15"
    assert period_of("monthly", at) == "2027-01"
    assert period_of("total", at) == "total"


def test_key_budgets_come_from_call_metadata() -> None:
    settings = Settings(
        pricing={"fake/model": PRICE},
        budgets=BudgetSettings(keys={"alice": Budget(limit_usd=0.02), "*": Budget(limit_usd=0.01)}),
    )
    fake = FakeModel(default=costing(0.01))
    gw = Gateway(settings, models={"r": fake})
    for _ in range(2):
        gw.complete("hi", model="r", max_tokens=10, metadata={"budget_key": "alice"})
    with pytest.raises(BudgetExceededError, match="key 'alice'"):
        gw.complete("hi", model="r", max_tokens=10, metadata={"budget_key": "alice"})
    gw.complete("hi", model="r", max_tokens=10, metadata={"budget_key": "bob"})
    with pytest.raises(BudgetExceededError, match="key 'bob'") as info:
        gw.complete("hi", model="r", max_tokens=10, metadata={"budget_key": "bob"})
    assert info.value.scope == "key"
    gw.complete("hi", model="r", max_tokens=10)  # no key: no key budget applies
    assert fake.call_count == 4


def test_a_budget_without_prices_is_a_config_error(scripted: dict[str, FakeModel]) -> None:
    scripted["x/unpriced"] = FakeModel(default="x")
    route = Route(
        deployments=[Deployment(model="x/unpriced", provider="fixture-scripted")], budget=Budget(limit_usd=1)
    )
    gw = Gateway(Settings(routes={"r": route}))
    with pytest.raises(ConfigError, match=r"no price is known for 'x/unpriced'; add it under pricing:"):
        gw.complete("hi", model="r")


def test_a_failed_call_releases_its_reservation(scripted: dict[str, FakeModel]) -> None:
    fake = FakeModel([ProviderServerError("down", status=500)], default=costing(0.01))
    gw = route_gateway(scripted, fake, budget=Budget(limit_usd=0.01))
    with pytest.raises(ProviderServerError):
        gw.complete("hi", model="paid", max_tokens=10)
    assert gw.complete("hi", model="paid", max_tokens=10).text == "ok"  # the failure held nothing back


def test_cache_hits_spend_no_budget(scripted: dict[str, FakeModel]) -> None:
    fake = FakeModel(default=costing(0.01))
    gw = route_gateway(scripted, fake, budget=Budget(limit_usd=0.01), cache=CacheSettings())
    for _ in range(5):
        gw.complete("same question", model="paid", max_tokens=10)
    assert fake.call_count == 1


def test_streams_settle_with_the_usage_they_report(scripted: dict[str, FakeModel]) -> None:
    fake = FakeModel(default=costing(0.002))
    gw = route_gateway(scripted, fake, budget=Budget(limit_usd=0.02))
    for _ in range(6):  # each reserves $0.01 but settles at the $0.002 its last chunk reports
        assert "".join(c.delta for c in gw.stream("hi", model="paid", max_tokens=10)) == "ok"
    with pytest.raises(BudgetExceededError):  # $0.012 spent: $0.01 more would pass $0.02
        list(gw.stream("hi", model="paid", max_tokens=10))
    assert fake.call_count == 6


def test_stale_holds_lapse(tmp_path: Path, clock: ManualClock) -> None:
    ledger = BudgetLedger(tmp_path / "b.db", clock=clock, hold_ttl_s=60)
    claim = Claim("route", "r", Budget(limit_usd=1.0))
    ledger.reserve([claim], 1.0)  # a call that never came back
    with pytest.raises(BudgetExceededError):
        ledger.reserve([claim], 0.5)
    clock.advance(61)
    ledger.settle(ledger.reserve([claim], 0.5), 0.25)
    assert ledger.spent("route", "r") == (0.25, 0.0)


# -- rpm / tpm ------------------------------------------------------------------------------------


def test_route_rpm_limit_refuses_without_sending(scripted: dict[str, FakeModel], clock: ManualClock) -> None:
    fake = FakeModel(default="ok")
    gw = route_gateway(scripted, fake, clock=clock, limits=Limits(rpm=2))
    gw.complete("a", model="paid")
    clock.advance(10)
    gw.complete("b", model="paid")
    with pytest.raises(LimitExceededError) as info:
        gw.complete("c", model="paid")
    err = info.value
    assert isinstance(err, RateLimitError) and err.limit == "rpm" and err.route == "paid"
    assert err.retry_after == pytest.approx(50)
    assert "no request was sent" in str(err) and fake.call_count == 2
    clock.advance(50)
    assert gw.complete("c", model="paid").text == "ok"


def test_route_tpm_limit_counts_real_usage(scripted: dict[str, FakeModel], clock: ManualClock) -> None:
    fake = FakeModel(default=costing(0.0, tokens=45))  # 90 tokens per call
    gw = route_gateway(scripted, fake, clock=clock, limits=Limits(tpm=100))
    gw.complete("hi", model="paid", max_tokens=20)
    with pytest.raises(LimitExceededError, match="tpm limit") as info:
        gw.complete("hi", model="paid", max_tokens=20)
    assert info.value.retry_after == pytest.approx(60)
    with pytest.raises(LimitExceededError, match="more than the limit of 100"):
        gw.complete("hi", model="paid", max_tokens=500)
    clock.advance(60)
    gw.complete("hi", model="paid", max_tokens=20)
    assert fake.call_count == 2


def test_a_refused_budget_gives_back_its_rate_slot(
    scripted: dict[str, FakeModel], clock: ManualClock
) -> None:
    fake = FakeModel(default=costing(0.01))
    gw = route_gateway(scripted, fake, clock=clock, budget=Budget(limit_usd=0.01), limits=Limits(rpm=2))
    gw.complete("hi", model="paid", max_tokens=10)
    with pytest.raises(BudgetExceededError):
        gw.complete("hi", model="paid", max_tokens=10)
    clock.advance(86_400)
    gw.complete("hi", model="paid", max_tokens=10)  # the refused call did not use an rpm slot
