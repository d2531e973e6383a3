"""Where virtual keys are kept: :class:`KeyRecord`, the SQLite table and the Redis hash layout.

SQLite: ``keys.db`` under ``$AIAPP_HOME`` (WAL, every write one transaction, file mode 0600).
Records are cached until ``PRAGMA data_version`` says another connection wrote, so a revocation
by ``aiapp keys revoke`` is seen by the next request. Redis: one hash per key
(``aiapp:keys:v1:key:<id>``) with the same fields, and a set of ids (``aiapp:keys:v1:index``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiapp.errors import ConfigError, InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    routes TEXT,
    budget_usd REAL,
    rpm INTEGER,
    tpm INTEGER,
    expires_at REAL,
    created_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS keys_by_name ON keys (name);
"""
COLUMNS = "id, name, routes, budget_usd, rpm, tpm, expires_at, created_at, revoked, secret_sha256"


@dataclass(frozen=True)
class KeyRecord:
    """A virtual key as stored (never its secret).

    Attributes:
        id: Public id, also the first part of the raw key.
        name: Who it is for (``team-a``).
        routes: Routes it may call; ``None`` means all.
        budget_usd: Its total budget; ``None`` means no budget of its own.
        rpm: Requests per minute; ``None`` means unlimited.
        tpm: Tokens per minute; ``None`` means unlimited.
        expires_at: Epoch seconds after which it is refused; ``None`` means never.
        created_at: Epoch seconds.
        revoked: Refused from now on.
    """

    id: str
    name: str
    routes: tuple[str, ...] | None
    budget_usd: float | None
    rpm: int | None
    tpm: int | None
    expires_at: float | None
    created_at: float
    revoked: bool

    @property
    def budget_key(self) -> str:
        """The key's name in the budget ledger (its id: a re-created name starts afresh)."""
        return self.id

    @property
    def budget_metadata(self) -> dict[str, Any]:
        """What the server passes as a gateway call's ``metadata`` so the budget layer charges this key."""
        if self.budget_usd is None:
            return {"budget_key": self.budget_key}
        return {"budget_key": self.budget_key, "budget_usd": self.budget_usd, "budget_window": "total"}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (no secret: the store has none to give)."""
        return {
            "id": self.id,
            "name": self.name,
            "routes": list(self.routes) if self.routes is not None else None,
            "budget_usd": self.budget_usd,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "revoked": self.revoked,
        }


class SQLiteKeys:
    """Keys in ``keys.db``; records are cached until another connection writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._cache: dict[str, tuple[KeyRecord, str] | None] = {}
        self._version = -1

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fresh = not self.path.exists()
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                if fresh:
                    os.chmod(self.path, 0o600)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(f"cannot open the key store: {exc}", path=str(self.path)) from exc
            self._conn = conn
        return self._conn

    def lookup(self, key_id: str) -> tuple[KeyRecord, str] | None:
        with self._lock:
            db = self._db()
            version = int(db.execute("PRAGMA data_version").fetchone()[0])
            if version != self._version:
                self._cache.clear()
                self._version = version
            if key_id not in self._cache:
                row = db.execute(f"SELECT {COLUMNS} FROM keys WHERE id = ?", (key_id,)).fetchone()
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key_id] = (from_row(row), row[9]) if row else None
            return self._cache[key_id]

    def insert(self, record: KeyRecord, secret_sha256: str) -> None:
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                clash = db.execute(
                    "SELECT 1 FROM keys WHERE name = ? AND revoked = 0 AND (expires_at IS NULL OR expires_at > ?)",
                    (record.name, record.created_at),
                ).fetchone()
                if clash:
                    raise InputError(
                        f"a live key named {record.name!r} exists; revoke it first or pick another name"
                    )
                db.execute(
                    f"INSERT INTO keys ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    to_row(record, secret_sha256),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._cache.pop(record.id, None)

    def all(self) -> list[KeyRecord]:
        with self._lock:
            rows = self._db().execute(f"SELECT {COLUMNS} FROM keys ORDER BY created_at").fetchall()
        return [from_row(row) for row in rows]

    def revoke(self, ids: list[str]) -> None:
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("UPDATE keys SET revoked = 1 WHERE id = ?", [(i,) for i in ids])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._cache.clear()

    def ping(self) -> bool:
        try:
            with self._lock:
                self._db().execute("SELECT 1").fetchone()
            return True
        except (ConfigError, sqlite3.Error):
            return False

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._cache.clear()


def to_row(record: KeyRecord, secret_sha256: str) -> tuple[Any, ...]:
    routes = json.dumps(list(record.routes)) if record.routes is not None else None
    return (
        record.id,
        record.name,
        routes,
        record.budget_usd,
        record.rpm,
        record.tpm,
        record.expires_at,
        record.created_at,
        int(record.revoked),
        secret_sha256,
    )


def from_row(row: tuple[Any, ...] | list[Any]) -> KeyRecord:
    routes = json.loads(row[2]) if row[2] else None
    return KeyRecord(
        id=str(row[0]),
        name=str(row[1]),
        routes=tuple(routes) if routes is not None else None,
        budget_usd=None if row[3] is None else float(row[3]),
        rpm=None if row[4] is None else int(row[4]),
        tpm=None if row[5] is None else int(row[5]),
        expires_at=None if row[6] is None else float(row[6]),
        created_at=float(row[7]),
        revoked=bool(int(row[8])),
    )


def redis_fields(record: KeyRecord, secret_sha256: str) -> dict[str, str]:
    row = to_row(record, secret_sha256)
    names = [c.strip() for c in COLUMNS.split(",")]
    return {name: "" if value is None else str(value) for name, value in zip(names, row, strict=True)}


def from_redis(fields: dict[Any, Any]) -> tuple[KeyRecord, str]:
    text = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    names = [c.strip() for c in COLUMNS.split(",")]
    row = [text.get(name) or None for name in names]
    row[8] = row[8] or "0"
    return from_row(row), str(row[9])
