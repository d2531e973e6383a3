"""The dashboard's rollup: incremental, never double-counting, percentiles within a bin of exact."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from aiapp.tracing import SpanRecord, TraceStore
from aiapp.ui._rollup import Rollup, hist_percentile, latency_bin
from aiapp.ui._traces import Filters, TraceReader


def _calls(store: TraceStore, durations: list[float], *, route: str = "local", start: float = 0.0) -> None:
    now = time.time()
    for i, ms in enumerate(durations):
        store.record(
            SpanRecord(
                span_id=f"{route}-{start}-{i}",
                trace_id=f"t-{route}-{start}-{i}",
                kind="llm",
                name=route,
                route=route,
                model=f"{route}/m",
                started_at=now - 600 + i * 0.01 + start,
                duration_ms=ms,
                input_tokens=10,
                output_tokens=5,
                cost_usd=0.001,
                cache_hit=i % 2 == 0,
            )
        )
    store.flush()


def test_new_spans_are_folded_in_once_even_with_two_readers(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    store = TraceStore(path)
    _calls(store, [10.0] * 40)
    a, b = TraceReader(path), TraceReader(path)  # two console processes on one home
    assert a.dashboard(Filters()).calls == 40
    _calls(store, [20.0] * 10, route="openai")
    assert b.dashboard(Filters()).calls == 50
    assert a.dashboard(Filters()).calls == 50  # a's refresh finds b's watermark: nothing twice
    d = a.dashboard(Filters(route="openai"))
    assert (d.calls, d.input_tokens, d.cache_hits) == (10, 100, 5)
    assert math.isclose(d.cost_usd, 0.01)
    assert a.options()["route"] == ["local", "openai"]
    store.close()


def test_a_replaced_trace_store_is_rolled_up_from_scratch(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    store = TraceStore(path)
    _calls(store, [10.0] * 30)
    store.close()
    assert TraceReader(path).dashboard(Filters()).calls == 30
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = TraceStore(path)
    _calls(store, [10.0] * 5)
    store.close()
    assert TraceReader(path).dashboard(Filters()).calls == 5


def test_histogram_percentiles_are_within_one_bin_of_exact(tmp_path: Path) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(4, 1) for _ in range(5000)]
    hist: dict[int, int] = {}
    for v in values:
        hist[latency_bin(v)] = hist.get(latency_bin(v), 0) + 1
    ordered = sorted(values)
    for q in (0.5, 0.95):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        approx = hist_percentile(hist, q)
        assert approx is not None and exact <= approx <= exact * 1.05 + 1e-9
    assert hist_percentile({}, 0.5) is None


def test_rollup_file_is_derived_state(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    store = TraceStore(path)
    _calls(store, [5.0, 15.0, 25.0])
    store.close()
    rollup = Rollup(path, tmp_path / "console.db")
    assert rollup.refresh() == 3 and rollup.refresh() == 0
    rollup.close()
    (tmp_path / "console.db").unlink()
    assert Rollup(path, tmp_path / "console.db").refresh() == 3
