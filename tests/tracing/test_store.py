"""The SQLite trace store: numbered migrations, spans, feedback, nesting."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiapp.errors import ConfigError
from aiapp.tracing import SpanRecord, Tracer, TraceStore, current_span
from aiapp.tracing._migrations import MIGRATIONS


def test_migrations_apply_once_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    store = TraceStore(path)
    assert store.schema_version == max(v for v, _, _ in MIGRATIONS)
    store.close()
    store = TraceStore(path)  # reopening is a no-op
    rows = (
        sqlite3.connect(path)
        .execute("SELECT version, name FROM schema_migrations ORDER BY version")
        .fetchall()
    )
    assert rows == [(v, n) for v, n, _ in MIGRATIONS]
    store.close()


def test_a_store_from_a_newer_aiapp_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    TraceStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    db.commit()
    with pytest.raises(ConfigError, match="schema version 999, newer than this aiapp knows"):
        TraceStore(path)


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="cannot open the trace store"):
        TraceStore(path)


def test_spans_round_trip(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    span = SpanRecord(
        span_id="s1",
        trace_id="t1",
        kind="llm",
        name="local",
        deployments=["a", "b"],
        attempts=2,
        cost_usd=None,
        cache_hit=False,
        input=[{"role": "user", "content": "hi"}],
        output="hello",
        attributes={"k": 1},
    )
    store.record(span)
    [back] = store.trace("t1")
    assert back == span
    assert store.trace("t") == []  # prefixes shorter than 4 characters are not searched
    assert store.recent(5, kind="llm")[0].span_id == "s1"
    assert store.recent(5, kind="tool") == []


def test_prefix_lookup(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    store.record(SpanRecord(span_id="x", trace_id="abcdef0123", kind="llm", name="n"))
    assert [s.trace_id for s in store.trace("abcd")] == ["abcdef0123"]


def test_tracer_nests_spans_under_the_current_one(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    tracer = Tracer(store, config_hash="cfg")
    with tracer.span("app", "ask") as outer:
        assert current_span() is not None
        with tracer.span("retrieval", "search") as inner:
            inner.attributes["k"] = 5
    assert current_span() is None
    spans = store.trace(outer.trace_id)
    assert [s.kind for s in spans] == ["app", "retrieval"]
    assert spans[1].parent_id == spans[0].span_id
    assert spans[1].attributes == {"k": 5} and spans[1].config_hash == "cfg"


def test_a_failing_span_is_recorded_as_an_error(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    tracer = Tracer(store)
    with pytest.raises(ValueError), tracer.span("tool", "divide"):
        raise ValueError("division by zero")
    [span] = store.recent(1)
    assert span.status == "error" and span.error == "ValueError: division by zero"


def test_feedback(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    store.add_feedback("t1", 1, "great")
    store.add_feedback("t1", -1, None, source="reviewer")
    assert [(f["score"], f["source"]) for f in store.feedback("t1")] == [(1.0, "user"), (-1.0, "reviewer")]


def _committed(path: Path) -> int:
    return sqlite3.connect(path).execute("SELECT COUNT(*) FROM spans").fetchone()[0]


def test_writes_are_batched_and_reach_disk(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = TraceStore(path, max_batch=3, max_delay_s=60)
    for i in range(2):
        store.record(SpanRecord(span_id=f"s{i}", trace_id="t", kind="llm", name="n"))
    assert _committed(path) == 0  # still buffered
    assert len(store.trace("t")) == 2  # but the writer reads its own writes
    store.record(SpanRecord(span_id="s2", trace_id="t", kind="llm", name="n"))
    store.record(SpanRecord(span_id="s3", trace_id="t", kind="llm", name="n"))
    store.close()
    assert _committed(path) == 4  # close commits the rest


def test_an_idle_buffer_is_committed_by_the_timer(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = TraceStore(path, max_delay_s=0.05)
    store.record(SpanRecord(span_id="s", trace_id="t", kind="llm", name="n"))
    deadline = time.monotonic() + 5
    while _committed(path) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _committed(path) == 1
    store.close()


def test_a_killed_process_leaves_earlier_spans_readable(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    code = (
        "import os, sys; from aiapp.tracing import TraceStore, SpanRecord;"
        f"s = TraceStore({str(path)!r}, max_batch=100);"
        "[s.record(SpanRecord(span_id=str(i), trace_id='t', kind='llm', name='n')) for i in range(250)];"
        "os._exit(9)"  # no atexit, no flush: like a kill -9
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    store = TraceStore(path)
    spans = store.trace("t")
    assert 200 <= len(spans) <= 250  # whole batches of 100 made it; at most one batch lost
    store.record(SpanRecord(span_id="again", trace_id="t2", kind="llm", name="n"))
    assert store.trace("t2")[0].span_id == "again"
