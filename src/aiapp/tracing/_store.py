"""The SQLite trace store under ``AIAPP_HOME`` (``traces.db``), with numbered migrations.

Writes are batched: :meth:`TraceStore.record` buffers the span, and the buffer is committed in one
transaction when it holds ``max_batch`` spans or its oldest span is ``max_delay_s`` old (inline, on
the next record), or by a one-shot timer when calls stop. A commit costs ~120 µs here and a span
~12 µs of SQLite in it (~5 µs to buffer); paying the commit once per batch keeps tracing out of the
gateway's per-call overhead. (Writer threads were measured twice and lost both times to GIL
hand-offs: ~0.4 ms added to every networked call, and 2,000 cached eval calls 0.1-0.25 s slower.)
Reads, :meth:`~TraceStore.flush`, :meth:`~TraceStore.close` and interpreter exit commit the buffer
first, so callers always read their own writes. A hard kill loses at most the last ``max_delay_s`` of spans, never the file: WAL
journaling keeps the database consistent, and readers (``aiapp traces``) never block writers.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import to_json

from aiapp.errors import ConfigError
from aiapp.tracing._migrations import MIGRATIONS


class SpanRecord(BaseModel):
    """One recorded unit of work: a model call, a retrieval, a tool call, an app request."""

    span_id: str
    trace_id: str
    parent_id: str | None = None
    kind: str
    name: str
    started_at: float = Field(default_factory=time.time)
    duration_ms: float = 0.0
    status: str = "ok"
    error: str | None = None
    route: str | None = None
    model: str | None = None
    deployments: list[str] = Field(default_factory=list)
    attempts: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    cache_hit: bool | None = None
    prompt_ref: str | None = None
    prompt_hash: str | None = None
    config_hash: str | None = None
    input: Any = None
    output: Any = None
    attributes: dict[str, Any] = Field(default_factory=dict)


_COLUMNS = list(SpanRecord.model_fields)
_JSON_COLUMNS = {"deployments", "input", "attributes"}
_JSON_INDEXES = frozenset(i for i, c in enumerate(_COLUMNS) if c in _JSON_COLUMNS)
#: Columns that may hold a container: the JSON ones and any typed ``Any``.
_NON_SCALAR_INDEXES = tuple(
    i for i, c in enumerate(_COLUMNS) if c in _JSON_COLUMNS or SpanRecord.model_fields[c].annotation is Any
)
_INSERT = f"INSERT OR REPLACE INTO spans ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_OPEN_STORES: weakref.WeakSet[TraceStore] = weakref.WeakSet()


class TraceStore:
    """Reads and writes spans and feedback.

    Args:
        path: The SQLite file; its directory is created. ``":memory:"`` for a throwaway store.
        max_batch: Commit once this many spans are buffered.
        max_delay_s: Commit once the oldest buffered span is this old (on the next record, or by a
            timer at twice this age when calls stop).
    """

    def __init__(self, path: Path | str, *, max_batch: int = 1000, max_delay_s: float = 0.5) -> None:
        self.path = str(path)
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # guards the connection
        self._buffer_lock = threading.Lock()  # guards only the buffer: never held during I/O
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open the trace store: {exc}", path=self.path) from exc
        self._closed = False
        self._buffer: list[tuple[Any, ...]] = []
        self._first_buffered = 0.0
        self._timer: threading.Timer | None = None
        _OPEN_STORES.add(self)

    def _migrate(self) -> None:
        db = self._db
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)"
        )
        applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        newest = max(v for v, _, _ in MIGRATIONS)
        if applied and max(applied) > newest:
            raise ConfigError(
                f"trace store is at schema version {max(applied)}, newer than this aiapp knows ({newest}); "
                "upgrade aiapp or point AIAPP_HOME elsewhere",
                path=self.path,
            )
        for version, name, sql in MIGRATIONS:
            if version in applied:
                continue
            # executescript would commit implicitly; run statements inside one explicit transaction.
            # BEGIN IMMEDIATE takes the write lock, so re-check: another process may have just applied it.
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                db.execute("COMMIT")
                continue
            try:
                for statement in sql.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The newest applied migration."""
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- writing ---------------------------------------------------------------------------------

    def record(self, span: SpanRecord) -> None:
        """Buffer one span for writing (see the module docstring for when it is committed)."""
        if self._closed:
            raise RuntimeError(f"trace store {self.path} is closed")
        # Field by field with pydantic-core's JSON encoder: model_dump() plus json.dumps cost ~4x more,
        # and this runs once per gateway call.
        fields = span.__dict__
        row = [fields[c] for c in _COLUMNS]
        for i in _NON_SCALAR_INDEXES:
            value = row[i]
            if i in _JSON_INDEXES or not (value is None or isinstance(value, str | int | float)):
                row[i] = to_json(value, fallback=str).decode()
        now = time.monotonic()
        with self._buffer_lock:
            self._buffer.append(tuple(row))  # a tuple of str/number/None is untracked by the GC
            size = len(self._buffer)
            if size == 1:
                self._first_buffered = now
                self._arm_timer()
        # Inline, not in a writer thread: a thread committing while the event loop runs measured
        # 0.1-0.25 s slower per 2,000 cached calls (GIL hand-offs on every row SQLite steps through).
        if size >= self.max_batch or now - self._first_buffered >= self.max_delay_s:
            self.flush()

    def flush(self) -> None:
        """Commit every buffered span in one transaction.

        Raises:
            ConfigError: when SQLite refuses the write (disk full, read-only); the spans stay buffered.
        """
        with self._lock:  # the connection's lock; held while the buffer is swapped so reads see it
            if self._closed:
                return
            with self._buffer_lock:
                rows, self._buffer = self._buffer, []
            if not rows:
                return
            try:
                self._db.execute("BEGIN")
                self._db.executemany(_INSERT, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                with self._buffer_lock:
                    self._buffer[:0] = rows
                raise ConfigError(f"could not write traces: {exc}", path=self.path) from exc

    def _arm_timer(self) -> None:
        # Commits a batch that no later call will trigger. One short-lived timer per batch, not per call.
        timer = threading.Timer(self.max_delay_s * 2, self._flush_quietly)
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _flush_quietly(self) -> None:
        with contextlib.suppress(ConfigError):  # the next explicit flush or read reports it
            self.flush()

    def add_feedback(
        self, trace_id: str, score: float, comment: str | None = None, *, source: str = "user"
    ) -> None:
        """Attach a user's score (e.g. +1/-1) and comment to a trace (committed at once)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO feedback (trace_id, score, comment, source, created_at) VALUES (?, ?, ?, ?, ?)",
                (trace_id, float(score), comment, source, time.time()),
            )

    # -- reading ---------------------------------------------------------------------------------

    def feedback(self, trace_id: str) -> list[dict[str, Any]]:
        """Feedback rows for a trace, oldest first."""
        with self._lock:
            cur = self._db.execute(
                "SELECT score, comment, source, created_at FROM feedback WHERE trace_id = ? ORDER BY id",
                (trace_id,),
            )
            return [dict(zip(("score", "comment", "source", "created_at"), row, strict=True)) for row in cur]

    def recent(self, limit: int = 20, *, kind: str | None = None) -> list[SpanRecord]:
        """The newest spans, newest first."""
        where, args = ("WHERE kind = ?", [kind]) if kind else ("", [])
        return self._query(f"SELECT * FROM spans {where} ORDER BY started_at DESC LIMIT ?", [*args, limit])

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """All spans of one trace, in start order. A unique prefix (4+ characters) is enough."""
        spans = self._query("SELECT * FROM spans WHERE trace_id = ? ORDER BY started_at", [trace_id])
        if spans or len(trace_id) < 4:
            return spans
        return self._query(
            "SELECT * FROM spans WHERE trace_id LIKE ? ORDER BY started_at", [trace_id.replace("%", "") + "%"]
        )

    def _query(self, sql: str, args: list[Any]) -> list[SpanRecord]:
        self.flush()
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for row in rows:
            data = dict(zip(names, row, strict=True))
            for column in _JSON_COLUMNS:
                if data.get(column) is not None:
                    data[column] = json.loads(data[column])
            data["deployments"] = data.get("deployments") or []
            data["attributes"] = data.get("attributes") or {}
            if data.get("cache_hit") is not None:
                data["cache_hit"] = bool(data["cache_hit"])
            out.append(SpanRecord.model_validate(data))
        return out

    def close(self) -> None:
        """Commit buffered spans and close the connection. Safe to call twice."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
                if self._timer is not None:
                    self._timer.cancel()
                _OPEN_STORES.discard(self)
                self._db.close()


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            store.close()
