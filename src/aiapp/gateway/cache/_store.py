"""Where cached replies live: the :class:`CacheStore` protocol and its SQLite implementation.

SQLite is the default (``$AIAPP_HOME/cache.db``): WAL journaling, each write its own transaction,
so a crash leaves either the old entry or the new one, never half of one, and readers in other
processes never block. Entries carry an expiry time; expired entries read as misses and are
purged now and then. :class:`~aiapp.gateway.cache.RedisCacheStore` is the shared alternative.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from aiapp.errors import ConfigError
from aiapp.gateway._clock import Clock, SystemClock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at);
"""
_PURGE_EVERY = 1000


@runtime_checkable
class CacheStore(Protocol):
    """A key → text store with per-entry expiry.

    A store whose reads may wait (a network round trip) sets a class attribute
    ``blocking_reads = True``; the cache layer then reads it from a worker thread. Writes always
    run off the event loop.
    """

    def get(self, key: str) -> str | None:
        """The live value for ``key``, or ``None``."""
        ...

    def put(self, key: str, value: str, *, ttl_s: float | None) -> None:
        """Store ``value``; ``ttl_s=None`` never expires."""
        ...

    def close(self) -> None:
        """Release connections (the store reopens on next use)."""
        ...


class SQLiteCacheStore:
    """A cache in one SQLite file.

    Args:
        path: The database file (its directory is created).
        clock: Wall-clock time for expiry.
    """

    def __init__(self, path: Path | str, *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._writes = 0

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(f"cannot open the cache database: {exc}", path=str(self.path)) from exc
            self._conn = conn
        return self._conn

    def get(self, key: str) -> str | None:
        """The live value for ``key``, or ``None`` (missing or expired)."""
        with self._lock:
            row = self._db().execute("SELECT value, expires_at FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self.clock.time()):
            return None
        value: str = row[0]
        return value

    def put(self, key: str, value: str, *, ttl_s: float | None) -> None:
        """Store ``value`` atomically (replacing any previous entry)."""
        now = self.clock.time()
        expires = None if ttl_s is None else now + ttl_s
        with self._lock:
            db = self._db()
            db.execute(
                "INSERT OR REPLACE INTO entries (key, value, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (key, value, now, expires),
            )
            self._writes += 1
            if self._writes % _PURGE_EVERY == 0:
                db.execute("DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))

    def purge_expired(self) -> int:
        """Delete expired entries; returns how many went."""
        with self._lock:
            cursor = self._db().execute(
                "DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?", (self.clock.time(),)
            )
            return cursor.rowcount

    def __len__(self) -> int:
        with self._lock:
            count: int = self._db().execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            return count

    def close(self) -> None:
        """Close the connection (reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"<SQLiteCacheStore {self.path}>"
