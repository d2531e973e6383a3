"""The canary's live metrics read from seeded spans: guard triggers and online scores per arm, and
the guard-rail decision (threshold, min_samples, confidence) on each."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiapp._rollout_config import CanarySpec
from aiapp.rollout import ArmMetrics, arm_metrics, find_regression
from aiapp.tracing import SpanRecord, TraceStore, new_id


def seed(store: TraceStore, arm: str, n: int, *, guard_hits: int = 0, errors: int = 0) -> list[str]:
    traces = []
    for i in range(n):
        trace = new_id()
        guards = [{"name": "pii", "stage": "output", "passed": i >= guard_hits, "action": "redact"}]
        store.record(
            SpanRecord(
                span_id=trace,
                trace_id=trace,
                kind="llm",
                name="main",
                status="error" if i < errors else "ok",
                error="ProviderServerError: 500" if i < errors else None,
                attributes={"rollout": {"experiment": "production/answer", "arm": arm}, "guards": guards},
            )
        )
        traces.append(trace)
    store.record(  # a guard block is not an error: it has its own metric
        SpanRecord(
            span_id=new_id(),
            trace_id=new_id(),
            kind="llm",
            name="main",
            status="error",
            error="GuardrailError: blocked",
            attributes={"rollout": {"experiment": "production/other", "arm": arm}},
        )
    )
    return traces


def test_guard_triggers_are_counted_per_arm_and_roll_back_a_canary(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    seed(store, "v1", 100, guard_hits=2)
    seed(store, "v2", 100, guard_hits=30, errors=1)
    metrics = arm_metrics(store, "production/answer")
    assert (metrics["v1"].calls, metrics["v1"].guard_hits, metrics["v1"].errors) == (100, 2, 0)
    assert (metrics["v2"].calls, metrics["v2"].guard_hits, metrics["v2"].errors) == (100, 30, 1)
    spec = CanarySpec(arm="v2", guard_rate=0.1, min_samples=50)
    regression = find_regression(spec, metrics["v2"], metrics["v1"])
    assert regression is not None and regression.metric == "guard_rate"
    assert regression.canary == pytest.approx(0.30) and regression.control == pytest.approx(0.02)
    # A looser threshold, or too few samples, keeps the canary.
    assert (
        find_regression(CanarySpec(arm="v2", guard_rate=0.5, min_samples=50), metrics["v2"], metrics["v1"])
        is None
    )
    assert (
        find_regression(CanarySpec(arm="v2", guard_rate=0.1, min_samples=500), metrics["v2"], metrics["v1"])
        is None
    )


def test_noise_on_few_samples_does_not_trip_the_confidence_check() -> None:
    spec = CanarySpec(arm="v2", error_rate=0.05, min_samples=10)
    canary = ArmMetrics("v2", calls=10, errors=2)  # 20% vs 10%: beyond the threshold ...
    control = ArmMetrics("v1", calls=10, errors=1)
    assert find_regression(spec, canary, control) is None  # ... but not at 95% on ten calls


def test_online_scores_roll_back_a_canary_whose_mean_drops(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    add_score = getattr(store, "add_score", None)
    if add_score is None:
        pytest.skip("this trace store has no scores table yet")
    control = seed(store, "v1", 60)
    canary = seed(store, "v2", 60)
    for i, trace in enumerate(control):
        add_score(trace, "faithfulness", 0.9 if i % 2 else 0.8)
    for i, trace in enumerate(canary):
        add_score(trace, "faithfulness", 0.5 if i % 2 else 0.6)
    metrics = arm_metrics(store, "production/answer")
    assert len(metrics["v2"].scores) == 60
    regression = find_regression(
        CanarySpec(arm="v2", online_score=0.1, min_samples=50), metrics["v2"], metrics["v1"]
    )
    assert regression is not None and regression.metric == "online_score"
    assert regression.control - regression.canary == pytest.approx(0.3)


def test_a_store_without_a_scores_table_has_no_online_scores(tmp_path: Path) -> None:
    import sqlite3

    store = TraceStore(tmp_path / "t.db")
    seed(store, "v1", 3)
    store.flush()
    db = sqlite3.connect(tmp_path / "t.db")
    db.execute("DROP TABLE IF EXISTS scores")
    db.commit()
    db.close()
    assert arm_metrics(store, "production/answer")["v1"].scores == []
