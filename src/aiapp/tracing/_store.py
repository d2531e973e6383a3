"""The SQLite trace store under ``AIAPP_HOME`` (``traces.db``), with numbered migrations.

Writes are batched: :meth:`TraceStore.record` buffers the span, and the buffer is committed in one
transaction when it holds ``max_batch`` spans or its oldest span is ``max_delay_s`` old (inline, on
the next record), or by a one-shot timer when calls stop. A commit costs ~120 µs here and a span
~12 µs of SQLite in it (~5 µs to buffer); paying the commit once per batch keeps tracing out of the
gateway's per-call overhead. (Writer threads were measured twice and lost both times to GIL
hand-offs: ~0.4 ms added to every networked call, and 2,000 cached eval calls 0.1-0.25 s slower.)
Reads, :meth:`~TraceStore.flush`, :meth:`~TraceStore.close` and interpreter exit commit the buffer
first, so callers always read their own writes (unless the store is degraded, below). A hard kill loses at most the last ``max_delay_s`` of spans, never the file: WAL
journaling keeps the database consistent, and readers (``aiapp traces``) never block writers.

Tracing degrades, it never fails a call. When the file cannot be written (another process holds
its write lock past ``busy_timeout_s``, the disk is full or read-only) the spans stay in memory, up
to ``max_buffer`` of them, and the store is *degraded*: calls stop trying to commit inline, and a
timer retries with a doubling backoff (up to 30 s); an explicit :meth:`~TraceStore.flush`, a read
or :meth:`~TraceStore.close` retries at once. When the buffer is full the oldest spans are dropped:
:attr:`TraceStore.dropped` counts them, the first drop is logged as a warning (logger
``aiapp.tracing``) naming the file and the reason, and the total is logged once more when the
store can write again or closes. Only the degraded path uses the timer thread for I/O.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import to_json

from aiapp.errors import ConfigError, InputError
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
_FEEDBACK_FIELDS = ("score", "comment", "source", "user", "created_at")
_SCORE_FIELDS = ("name", "value", "comment", "source", "span_id", "created_at")
_IN_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit
_OPEN_STORES: weakref.WeakSet[TraceStore] = weakref.WeakSet()
_OPEN_BUSY_TIMEOUT_MS = 5000  # opening (and migrating) may wait longer than a write does
_MAX_RETRY_S = 30.0

log = logging.getLogger("aiapp.tracing")


class TraceStore:
    """Reads and writes spans, feedback and scores.

    Args:
        path: The SQLite file; its directory is created. ``":memory:"`` for a throwaway store.
        max_batch: Commit once this many spans are buffered.
        max_delay_s: Commit once the oldest buffered span is this old (on the next record, or by a
            timer at twice this age when calls stop).
        busy_timeout_s: How long a commit waits for another process's write lock before the
            store degrades to buffering (see the module docstring).
        max_buffer: The most spans kept in memory while the file cannot be written; beyond it
            the oldest are dropped and counted in :attr:`dropped`.

    Attributes:
        dropped: Spans dropped because the buffer was full while the file could not be written.
        write_error: Why the last commit failed, while the store is degraded (``None`` when healthy).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_batch: int = 1000,
        max_delay_s: float = 0.5,
        busy_timeout_s: float = 1.0,
        max_buffer: int = 10_000,
    ) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self.path = str(path)
        self.max_batch = min(max_batch, max_buffer)
        self.max_delay_s = max_delay_s
        self.busy_timeout_s = busy_timeout_s
        self.max_buffer = max_buffer
        self.dropped = 0
        self.write_error: str | None = None
        self._dropped_unreported = 0  # dropped since the last summary warning
        self._retry_s = 0.0
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # guards the connection
        self._buffer_lock = threading.Lock()  # guards only the buffer: never held during I/O
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA busy_timeout={_OPEN_BUSY_TIMEOUT_MS}")
            self._migrate()
            self._db.execute(f"PRAGMA busy_timeout={max(0, int(busy_timeout_s * 1000))}")
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
                self._arm_timer(self.max_delay_s * 2)
            elif size > self.max_buffer:
                self._drop_oldest_locked()
        # Inline, not in a writer thread: a thread committing while the event loop runs measured
        # 0.1-0.25 s slower per 2,000 cached calls (GIL hand-offs on every row SQLite steps through).
        # A degraded store leaves retries to its timer, so a locked file stalls no further calls.
        if self.write_error is None and (
            size >= self.max_batch or now - self._first_buffered >= self.max_delay_s
        ):
            self._flush(blocking=False)

    @property
    def pending(self) -> int:
        """Spans buffered in memory, not yet committed."""
        return len(self._buffer)

    def flush(self) -> bool:
        """Commit every buffered span in one transaction; never raises for an unwritable file.

        Returns:
            ``True`` when nothing is left buffered; ``False`` when SQLite refused the write (locked
            past ``busy_timeout_s``, disk full, read-only): the spans stay buffered, the store is
            degraded and retries later (see the module docstring).
        """
        return self._flush(blocking=True)

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for ad-hoc read-only SQL over the spans, feedback and scores tables.

        Buffered spans are committed first. A file store gets its own ``mode=ro`` connection (WAL
        readers never wait for the writer); an in-memory store has one connection only, lent here
        under the store's lock.
        """
        self.flush()
        if self.path == ":memory:":
            with self._lock:
                yield self._db
            return
        db = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            yield db
        finally:
            db.close()

    def _flush(self, *, blocking: bool) -> bool:
        # Not blocking: an inline flush from record() never waits behind another thread's commit.
        if not self._lock.acquire(blocking=blocking):
            return False
        try:  # the connection's lock; held while the buffer is swapped so reads see it
            if self._closed:
                return not self._buffer
            with self._buffer_lock:
                rows, self._buffer = self._buffer, []
            if not rows:
                return True
            try:
                self._db.execute("BEGIN")
                self._db.executemany(_INSERT, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                self._write_failed(rows, exc)
                return False
            if self.write_error is not None:
                self._recovered()
            return True
        finally:
            self._lock.release()

    def _write_failed(self, rows: list[tuple[Any, ...]], exc: sqlite3.Error) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.write_error is None:
            log.warning(
                "cannot write traces to %s (%s): keeping up to %d spans in memory and retrying",
                self.path,
                reason,
                self.max_buffer,
            )
        self.write_error = reason
        with self._buffer_lock:
            self._buffer[:0] = rows
            if len(self._buffer) == len(rows):
                self._first_buffered = time.monotonic()
            while len(self._buffer) > self.max_buffer:
                self._drop_oldest_locked()
        self._retry_s = min(_MAX_RETRY_S, max(self._retry_s * 2, self.max_delay_s * 2, 0.05))
        self._arm_timer(self._retry_s)

    def _drop_oldest_locked(self) -> None:
        # Called with the buffer lock held, only when the buffer is over its bound.
        excess = len(self._buffer) - self.max_buffer
        del self._buffer[:excess]
        if self._dropped_unreported == 0:
            log.warning(
                "dropping trace spans: %d span(s) dropped, the in-memory buffer of %d is full while "
                "%s cannot be written (%s); TraceStore.dropped counts every dropped span",
                excess,
                self.max_buffer,
                self.path,
                self.write_error or "commit pending",
            )
        self.dropped += excess
        self._dropped_unreported += excess

    def _recovered(self) -> None:
        if self._dropped_unreported:
            log.warning(
                "traces are written to %s again; %d span(s) were dropped while it could not be (%s)",
                self.path,
                self._dropped_unreported,
                self.write_error,
            )
            self._dropped_unreported = 0
        self.write_error = None
        self._retry_s = 0.0

    def _arm_timer(self, delay_s: float) -> None:
        # Commits a batch that no later call will trigger, or retries a degraded store.
        # One short-lived timer per batch (or per retry), not per call.
        if self._timer is not None:
            self._timer.cancel()
        timer = threading.Timer(delay_s, self._flush_quietly)
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _flush_quietly(self) -> None:
        with contextlib.suppress(Exception):  # best effort from a timer thread; _write_failed logs
            self._flush(blocking=True)

    def add_feedback(
        self,
        trace_id: str,
        score: float,
        comment: str | None = None,
        *,
        source: str = "user",
        user: str | None = None,
    ) -> None:
        """Attach a user's score (e.g. +1/-1) and comment to a trace (committed at once).

        The comment is stored as given: callers apply the content-capture policy first
        (:func:`aiapp.tracing._feedback.record_feedback` does).
        """
        with self._lock:
            self._db.execute(
                "INSERT INTO feedback (trace_id, score, comment, source, created_at, user) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (trace_id, float(score), comment, source, time.time(), user),
            )

    def add_score(
        self,
        trace_id: str,
        name: str,
        value: float | None,
        *,
        comment: str | None = None,
        source: str = "online",
        span_id: str | None = None,
    ) -> None:
        """Store a scorer's verdict on a trace (committed at once).

        ``value`` is ``None`` when the scorer could not score the trace (its reason goes in
        ``comment``): an unscored trace is never stored as 0. ``source`` says who scored
        (``online``, ``eval`` ...); ``span_id`` names the span, for a score about one span.
        """
        with self._lock:
            self._db.execute(
                "INSERT INTO scores (trace_id, span_id, name, value, comment, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    trace_id,
                    span_id,
                    name,
                    None if value is None else float(value),
                    comment,
                    source,
                    time.time(),
                ),
            )

    # -- reading ---------------------------------------------------------------------------------

    def feedback(self, trace_id: str) -> list[dict[str, Any]]:
        """Feedback rows for a trace, oldest first (``score``, ``comment``, ``source``, ``user``, ``created_at``)."""
        return self.feedback_for([trace_id]).get(trace_id, [])

    def feedback_for(self, trace_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Feedback rows of many traces at once: trace id → rows, oldest first."""
        return self._rows_for("feedback", _FEEDBACK_FIELDS, trace_ids)

    def scores(self, trace_id: str) -> list[dict[str, Any]]:
        """Stored scores of a trace, oldest first (``name``, ``value``, ``comment``, ``source`` ...)."""
        return self.scores_for([trace_id]).get(trace_id, [])

    def scores_for(self, trace_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Scores of many traces at once: trace id → rows, oldest first."""
        return self._rows_for("scores", _SCORE_FIELDS, trace_ids)

    def _rows_for(
        self, table: str, fields: tuple[str, ...], trace_ids: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        ids = list(dict.fromkeys(trace_ids))
        with self._lock:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                cur = self._db.execute(
                    f"SELECT trace_id, {', '.join(fields)} FROM {table} "
                    f"WHERE trace_id IN ({', '.join('?' * len(chunk))}) ORDER BY id",
                    chunk,
                )
                for trace_id, *values in cur:
                    out.setdefault(trace_id, []).append(dict(zip(fields, values, strict=True)))
        return out

    def resolve(self, trace_id: str) -> str | None:
        """The full id of a stored trace, from its id or a unique prefix (4+ characters).

        Raises:
            InputError: the prefix matches more than one trace.
        """
        self.flush()
        with self._lock:
            if self._db.execute("SELECT 1 FROM spans WHERE trace_id = ? LIMIT 1", (trace_id,)).fetchone():
                return trace_id
            if len(trace_id) < 4:
                return None
            rows = self._db.execute(
                "SELECT DISTINCT trace_id FROM spans WHERE trace_id LIKE ? LIMIT 2",
                (trace_id.replace("%", "") + "%",),
            ).fetchall()
        if len(rows) > 1:
            raise InputError(
                f"trace id prefix {trace_id!r} matches more than one trace: give more characters"
            )
        return str(rows[0][0]) if rows else None

    def traces(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        route: str | None = None,
        limit: int | None = None,
    ) -> list[list[SpanRecord]]:
        """Whole traces, newest first, each as its spans in start order.

        A trace's time is its root span's start (``since`` inclusive, ``until`` exclusive, Unix
        seconds); ``route`` keeps traces with any span on that route.
        """
        where = ["parent_id IS NULL"]
        args: list[Any] = []
        if since is not None:
            where.append("started_at >= ?")
            args.append(since)
        if until is not None:
            where.append("started_at < ?")
            args.append(until)
        if route is not None:
            where.append("trace_id IN (SELECT trace_id FROM spans WHERE route = ?)")
            args.append(route)
        sql = f"SELECT trace_id FROM spans WHERE {' AND '.join(where)} ORDER BY started_at DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        self.flush()
        with self._lock:
            ids = list(dict.fromkeys(str(row[0]) for row in self._db.execute(sql, args)))
        by_trace: dict[str, list[SpanRecord]] = {i: [] for i in ids}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            spans = self._query(
                f"SELECT * FROM spans WHERE trace_id IN ({', '.join('?' * len(chunk))}) ORDER BY started_at",
                chunk,
            )
            for span in spans:
                by_trace[span.trace_id].append(span)
        return [by_trace[i] for i in ids]

    def prune(self, older_than: float, *, dry_run: bool = False) -> dict[str, int]:
        """Delete the spans, feedback and scores of traces older than ``older_than`` (Unix seconds).

        A trace is old when its newest span started before the cutoff; feedback and scores whose
        trace has no spans left are pruned by their own age. Everything goes in one transaction.

        Returns:
            Counts of what was (or, with ``dry_run``, would be) deleted: ``traces``, ``spans``,
            ``feedback``, ``scores``.

        Raises:
            ConfigError: another process held the write lock for longer than 5 s.
        """
        self.flush()
        old = "SELECT trace_id FROM spans GROUP BY trace_id HAVING MAX(started_at) < ?"
        orphan = (
            "(trace_id IN old_traces OR (trace_id NOT IN (SELECT trace_id FROM spans) AND created_at < ?))"
        )
        counts: dict[str, int] = {}
        with self._lock:
            db = self._db
            # A maintenance job may wait for a busy writer longer than a traced call would.
            db.execute(f"PRAGMA busy_timeout={_OPEN_BUSY_TIMEOUT_MS}")
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise ConfigError(
                    f"cannot prune the trace store: {exc} (another process is writing; try again)",
                    path=self.path,
                ) from exc
            finally:
                db.execute(f"PRAGMA busy_timeout={max(0, int(self.busy_timeout_s * 1000))}")
            try:
                db.execute("DROP TABLE IF EXISTS temp.old_traces")
                db.execute(f"CREATE TEMP TABLE old_traces AS {old}", (older_than,))
                counts["traces"] = int(db.execute("SELECT COUNT(*) FROM old_traces").fetchone()[0])
                counts["spans"] = int(
                    db.execute("SELECT COUNT(*) FROM spans WHERE trace_id IN old_traces").fetchone()[0]
                )
                for table in ("feedback", "scores"):
                    counts[table] = int(
                        db.execute(f"SELECT COUNT(*) FROM {table} WHERE {orphan}", (older_than,)).fetchone()[
                            0
                        ]
                    )
                if not dry_run:
                    db.execute("DELETE FROM spans WHERE trace_id IN old_traces")
                    for table in ("feedback", "scores"):
                        db.execute(f"DELETE FROM {table} WHERE {orphan}", (older_than,))
                db.execute("DROP TABLE temp.old_traces")
                db.execute("ROLLBACK" if dry_run else "COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return counts

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
        """Commit buffered spans and close the connection. Safe to call twice.

        Spans that still cannot be written (the file stays locked or unwritable) are dropped,
        counted in :attr:`dropped` and reported in one warning; closing never raises for them.
        """
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
                with self._buffer_lock:
                    lost, self._buffer = len(self._buffer), []
                if lost or self._dropped_unreported:
                    self.dropped += lost
                    log.warning(
                        "trace store %s closed with %d span(s) dropped: it could not be written (%s)",
                        self.path,
                        self._dropped_unreported + lost,
                        self.write_error,
                    )
                    self._dropped_unreported = 0


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            store.close()
