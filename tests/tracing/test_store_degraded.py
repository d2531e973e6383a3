"""A trace store that cannot be written degrades: the call succeeds, spans wait in memory, and
drops are reported once. A real second process holds the write lock on ``traces.db``."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiapp.config import Settings
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel
from aiapp.tracing import SpanRecord, TraceStore

# Takes the write lock, says so, and holds it until told to let go (a line on stdin).
_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
db.close()
print("released", flush=True)
"""


class LockHolder:
    """A second process holding ``BEGIN IMMEDIATE`` on a database until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"  # handshake: the lock is held now

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def hold_lock() -> Iterator[type[LockHolder]]:
    holders: list[LockHolder] = []

    class Tracked(LockHolder):
        def __init__(self, path: Path) -> None:
            super().__init__(path)
            holders.append(self)

    yield Tracked
    for holder in holders:
        holder.kill()


def _committed(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM spans").fetchone()[0])
    finally:
        db.close()


def _span(i: int) -> SpanRecord:
    return SpanRecord(span_id=f"s{i}", trace_id="t", kind="llm", name="n")


def test_a_locked_trace_db_does_not_fail_a_gateway_call(tmp_path: Path, hold_lock: type[LockHolder]) -> None:
    path = tmp_path / "traces.db"
    # max_batch=1: every call commits inline, so the commit happens inside the call.
    store = TraceStore(path, max_batch=1, busy_timeout_s=0.05)
    gw = Gateway(Settings(home=tmp_path), models={"local": FakeModel(["hello there"])}, store=store)
    holder = hold_lock(path)

    reply = gw.complete("hi")  # the old store raised "could not write traces: database is locked"

    assert reply.text == "hello there"
    assert store.write_error is not None and "locked" in store.write_error
    assert store.pending >= 1 and _committed(path) == 0
    holder.release()
    assert store.flush() is True  # the retry commits what was kept
    assert store.write_error is None and store.pending == 0
    assert [s.kind for s in store.trace(reply.trace_id or "")] == ["llm"]
    assert store.dropped == 0
    gw.close()


def test_a_full_buffer_drops_the_oldest_spans_and_says_so_once(
    tmp_path: Path, hold_lock: type[LockHolder], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "traces.db"
    store = TraceStore(path, max_batch=1, max_buffer=3, busy_timeout_s=0.05)
    holder = hold_lock(path)
    caplog.set_level(logging.WARNING, logger="aiapp.tracing")

    for i in range(8):
        store.record(_span(i))  # never raises
        store.flush()  # a retry that fails again: the lock is still held

    assert store.pending == 3 and store.dropped == 5
    drops = [r.getMessage() for r in caplog.records if "dropping trace spans" in r.getMessage()]
    assert len(drops) == 1
    assert "buffer of 3 is full" in drops[0] and "locked" in drops[0] and str(path) in drops[0]
    unwritable = [r for r in caplog.records if "cannot write traces" in r.getMessage()]
    assert len(unwritable) == 1  # the degraded state is announced once, not per retry

    holder.release()
    caplog.clear()
    assert store.flush() is True
    assert sorted(s.span_id for s in store.trace("t")) == ["s5", "s6", "s7"]  # the newest are kept
    [summary] = [r.getMessage() for r in caplog.records]
    assert "5 span(s) were dropped" in summary
    store.close()


def test_closing_a_store_that_stays_locked_reports_the_loss(
    tmp_path: Path, hold_lock: type[LockHolder], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "traces.db"
    store = TraceStore(path, max_delay_s=60, busy_timeout_s=0.05)
    store.record(_span(1))
    store.record(_span(2))
    holder = hold_lock(path)
    caplog.set_level(logging.WARNING, logger="aiapp.tracing")
    store.close()  # does not raise
    assert store.dropped == 2
    assert any("closed with 2 span(s) dropped" in r.getMessage() for r in caplog.records)
    holder.release()
    assert _committed(path) == 0


def test_a_degraded_store_retries_on_its_own(tmp_path: Path, hold_lock: type[LockHolder]) -> None:
    path = tmp_path / "traces.db"
    store = TraceStore(path, max_batch=1, max_delay_s=0.01, busy_timeout_s=0.05)
    holder = hold_lock(path)
    store.record(_span(1))
    assert store.write_error is not None
    holder.release()
    # The retry timer commits without any further call; wait on the store's own timer.
    timer = store._timer
    while timer is not None and store.pending:
        timer.join(timeout=30)
        timer = store._timer if store.pending else None
    assert _committed(path) == 1 and store.write_error is None
    store.close()
