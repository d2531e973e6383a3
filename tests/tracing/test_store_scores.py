"""Migrations 3-4 (feedback users, scores, filter indexes), trace listing, prefixes and pruning."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from aiapp.errors import InputError
from aiapp.tracing import SpanRecord, TraceStore
from aiapp.tracing._migrations import MIGRATIONS


def _v2_store(path: Path) -> None:
    """A store as aiapp wrote it before migrations 3 and 4, with one feedback row."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)")
    for version, name, sql in MIGRATIONS[:2]:
        db.executescript(sql)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, name))
    db.execute(
        "INSERT INTO feedback (trace_id, score, comment, source, created_at) VALUES ('t1', 1, 'ok', 'user', 1)"
    )
    db.commit()
    db.close()


def test_an_old_store_migrates_forward_and_keeps_its_feedback(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    _v2_store(path)
    store = TraceStore(path)
    assert store.schema_version >= 4
    assert store.feedback("t1") == [
        {"score": 1.0, "comment": "ok", "source": "user", "user": None, "created_at": 1.0}
    ]
    store.add_feedback("t1", -1, "meh", user="u7")  # the old call shape still works, user is new
    store.add_feedback("t1", 0.5)
    assert [(f["score"], f["user"]) for f in store.feedback("t1")] == [(1.0, None), (-1.0, "u7"), (0.5, None)]
    db = sqlite3.connect(path)
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {
        "spans_route_started",
        "spans_prompt",
        "spans_roots",
        "scores_trace",
        "scores_name_created",
    } <= indexes
    plan = " ".join(
        str(row[-1])
        for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT trace_id FROM spans WHERE route = 'x' AND started_at > 0"
        )
    )
    assert "spans_route_started" in plan


def test_scores_round_trip_and_unscored_is_null_not_zero(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    store.add_score("t1", "faithfulness", 0.75, comment="3/4 supported")
    store.add_score("t1", "judge_rubric", None, comment="no judge route", span_id="s9")
    store.add_score("t2", "faithfulness", 1.0, source="eval")
    rows = store.scores("t1")
    assert [(r["name"], r["value"], r["source"]) for r in rows] == [
        ("faithfulness", 0.75, "online"),
        ("judge_rubric", None, "online"),
    ]
    assert rows[1]["comment"] == "no judge route" and rows[1]["span_id"] == "s9"
    assert set(store.scores_for(["t1", "t2", "t3"])) == {"t1", "t2"}


def _trace(
    store: TraceStore, trace_id: str, started: float, *, route: str = "local", children: int = 1
) -> None:
    store.record(
        SpanRecord(
            span_id=trace_id, trace_id=trace_id, kind="app", name="rag", route=route, started_at=started
        )
    )
    for i in range(children):
        store.record(
            SpanRecord(
                span_id=f"{trace_id}-{i}",
                trace_id=trace_id,
                parent_id=trace_id,
                kind="llm",
                name=route,
                route=route,
                started_at=started + 0.1 + i,
            )
        )


def test_traces_are_listed_whole_newest_first_with_filters(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "t.db")
    now = time.time()
    _trace(store, "aaaa0001", now - 3600, children=2)
    _trace(store, "aaaa0002", now - 60, route="judge")
    _trace(store, "bbbb0003", now - 10)
    traces = store.traces()
    assert [t[0].trace_id for t in traces] == ["bbbb0003", "aaaa0002", "aaaa0001"]
    assert [s.span_id for s in traces[2]] == ["aaaa0001", "aaaa0001-0", "aaaa0001-1"]
    assert [t[0].trace_id for t in store.traces(since=now - 120)] == ["bbbb0003", "aaaa0002"]
    assert [t[0].trace_id for t in store.traces(until=now - 120)] == ["aaaa0001"]
    assert [t[0].trace_id for t in store.traces(route="judge")] == ["aaaa0002"]
    assert [t[0].trace_id for t in store.traces(limit=1)] == ["bbbb0003"]
    assert store.resolve("bbbb") == "bbbb0003" and store.resolve("bbbb0003") == "bbbb0003"
    assert store.resolve("cccc") is None and store.resolve("bb") is None
    with pytest.raises(InputError, match="matches more than one trace"):
        store.resolve("aaaa")


def test_prune_removes_old_traces_only_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = TraceStore(path)
    now = time.time()
    day = 86400.0
    _trace(store, "old00001", now - 40 * day, children=2)
    _trace(store, "new00001", now - 1 * day)
    # A long-running trace that started before the cutoff but has a recent span is kept whole.
    _trace(store, "long0001", now - 31 * day)
    store.record(
        SpanRecord(
            span_id="long-late",
            trace_id="long0001",
            parent_id="long0001",
            kind="tool",
            name="t",
            started_at=now - day,
        )
    )
    for tid in ("old00001", "new00001", "long0001"):
        store.add_feedback(tid, 1)
        store.add_score(tid, "faithfulness", 0.5)
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO feedback (trace_id, score, source, created_at) VALUES ('gone0001', 1, 'user', ?)",
        (now - 40 * day,),
    )  # feedback on a trace already gone, old
    db.execute(
        "INSERT INTO feedback (trace_id, score, source, created_at) VALUES ('gone0002', 1, 'user', ?)", (now,)
    )  # ... and recent: kept
    db.commit()
    cutoff = now - 30 * day

    dry = store.prune(cutoff, dry_run=True)
    assert dry == {"traces": 1, "spans": 3, "feedback": 2, "scores": 1}
    assert len(store.trace("old00001")) == 3  # a dry run deletes nothing

    assert store.prune(cutoff) == dry
    assert (
        store.trace("old00001") == [] and store.feedback("old00001") == [] and store.scores("old00001") == []
    )
    assert store.feedback("gone0001") == [] and len(store.feedback("gone0002")) == 1
    assert len(store.trace("new00001")) == 2 and len(store.trace("long0001")) == 3
    assert len(store.feedback("new00001")) == 1 and len(store.scores("long0001")) == 1
    assert store.prune(cutoff) == {"traces": 0, "spans": 0, "feedback": 0, "scores": 0}


def test_a_failed_prune_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.db"
    store = TraceStore(path)
    _trace(store, "old00001", time.time() - 90 * 86400)
    store.add_score("old00001", "faithfulness", 0.5)
    store.flush()
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TRIGGER no_score_delete BEFORE DELETE ON scores BEGIN SELECT RAISE(ABORT, 'kept'); END"
    )
    db.commit()
    db.close()
    with pytest.raises(sqlite3.IntegrityError, match="kept"):
        store.prune(time.time())
    assert len(store.trace("old00001")) == 2  # the span deletions were rolled back with it
    assert len(store.scores("old00001")) == 1


def test_prune_against_a_held_write_lock_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiapp.errors import ConfigError
    from aiapp.tracing import _store

    path = tmp_path / "t.db"
    store = TraceStore(path)
    _trace(store, "old00001", time.time() - 90 * 86400)
    store.flush()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process mid-write
    monkeypatch.setattr(_store, "_OPEN_BUSY_TIMEOUT_MS", 50)
    with pytest.raises(ConfigError, match="cannot prune the trace store: database is locked") as caught:
        store.prune(time.time())
    assert str(path) in str(caught.value)
    other.execute("ROLLBACK")
    assert store.prune(time.time())["traces"] == 1  # and works once the lock is gone
