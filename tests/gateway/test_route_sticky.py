"""Sticky weighted routes: a caller key (``user`` in the call's metadata) always lands on the same
deployment, the split follows the weights, and the arm is recorded on the trace."""

from __future__ import annotations

import math
from collections import Counter

from aiapp.config import Settings
from aiapp.errors import ProviderServerError
from aiapp.gateway import Gateway, RouteDeployment, RouteModel
from aiapp.testing import FakeModel
from aiapp.tracing import TraceStore


def _route() -> tuple[RouteModel, FakeModel, FakeModel]:
    a, b = FakeModel(name="a", default="from a"), FakeModel(name="b", default="from b")
    route = RouteModel(
        "split", [RouteDeployment("a", a, weight=90), RouteDeployment("b", b, weight=10)], strategy="weighted"
    )
    return route, a, b


def test_a_90_10_split_over_10k_keys_is_within_binomial_tolerance_and_sticky() -> None:
    route, _, _ = _route()
    gw = Gateway(Settings(tracing={"enabled": False}), models={"split": route})
    first: dict[str, str] = {}
    for i in range(10_000):
        reply = gw.complete("hi", model="split", metadata={"user": f"user-{i}"})
        first[f"user-{i}"] = reply.deployment or ""
    counts = Counter(first.values())
    n, p = 10_000, 0.10
    sd = math.sqrt(n * p * (1 - p))  # 30 calls
    assert abs(counts["b"] - n * p) <= 4 * sd, counts
    assert counts["a"] + counts["b"] == n
    # Sticky: the same keys again, in another order, land where they landed before.
    for i in reversed(range(0, 10_000, 7)):
        key = f"user-{i}"
        assert gw.complete("hi", model="split", metadata={"user": key}).deployment == first[key]


def test_without_a_key_the_weighted_strategy_stays_random() -> None:
    route, _, _ = _route()
    gw = Gateway(Settings(tracing={"enabled": False}), models={"split": route})
    seen = Counter(gw.complete("hi", model="split").deployment for _ in range(400))
    assert set(seen) == {"a", "b"}  # both serve; with a key each caller would see only one


def test_the_arm_is_recorded_on_the_trace_and_failover_still_works(tmp_path: object) -> None:
    store = TraceStore(":memory:")
    a = FakeModel(name="a", default=ProviderServerError("down", status=503))
    b = FakeModel(name="b", default="from b")
    route = RouteModel(
        "split", [RouteDeployment("a", a, weight=99), RouteDeployment("b", b, weight=1)], strategy="weighted"
    )
    gw = Gateway(Settings(), models={"split": route}, store=store)
    key = next(k for k in (f"k{i}" for i in range(1000)) if _lands_on_a(k))
    reply = gw.complete("hi", model="split", metadata={"user": key})
    assert reply.text == "from b" and reply.tried == ("a", "b")  # the sticky arm failed: failover
    span = store.recent(1, kind="llm")[0]
    arm = span.attributes["route_arm"]
    assert arm["experiment"] == "route/split" and arm["arm"] == "a"
    assert arm["key"] != key and len(arm["key"]) == 12  # hashed, not the user id


def _lands_on_a(key: str) -> bool:
    from aiapp._rollout_config import bucket

    return bucket(key, "route/split") < 0.99
