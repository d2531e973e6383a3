"""The budget ledger: what each route and key has spent, and what calls in flight have reserved.

Persisted in SQLite (``$AIAPP_HOME/budgets.db``) so a restart does not reset spending, and shared
safely by threads, asyncio tasks and processes: a reservation checks every budget it touches and
records its hold in one ``BEGIN IMMEDIATE`` transaction, so two calls can never both squeeze under a
limit that only one of them fits.

A call's life: :meth:`BudgetLedger.reserve` its worst-case cost (refused with
:class:`~aiapp.errors.BudgetExceededError` if any budget would go over) → the call →
:meth:`BudgetLedger.settle` with the real cost (or :meth:`BudgetLedger.release` if nothing was
spent). A hold left by a crashed process lapses after ``hold_ttl_s``.

Windows are UTC calendar periods: ``daily`` (``2026-11-05``), ``monthly`` (``2026-11``) or
``total`` (never resets).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiapp._gateway_config import BudgetWindow
from aiapp.config import Budget
from aiapp.errors import BudgetExceededError, ConfigError
from aiapp.gateway._clock import Clock, SystemClock

if TYPE_CHECKING:
    from aiapp.config import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    scope TEXT NOT NULL,
    period TEXT NOT NULL,
    spent_usd REAL NOT NULL DEFAULT 0,
    calls INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, period)
);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT NOT NULL,
    scope TEXT NOT NULL,
    period TEXT NOT NULL,
    amount_usd REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (id, scope)
);
"""
_EPSILON = 1e-12


def period_of(window: BudgetWindow, at: float) -> str:
    """The period of ``window`` that contains the epoch time ``at`` (UTC)."""
    if window == "total":
        return "total"
    moment = time.gmtime(at)
    return time.strftime("%Y-%m-%d" if window == "daily" else "%Y-%m", moment)


@dataclass(frozen=True)
class Claim:
    """A budget a call draws on: ``scope`` is ``route`` or ``key``, ``name`` the route or key."""

    scope: str
    name: str
    budget: Budget

    @property
    def id(self) -> str:
        """The ledger's name for it (``route:openai``, ``key:alice``)."""
        return f"{self.scope}:{self.name}"


@dataclass
class Reservation:
    """A hold on one or more budgets for one call."""

    id: str
    amount_usd: float
    holds: tuple[tuple[str, str], ...]  # (scope id, period)
    done: bool = False


class Ledger(Protocol):
    """What the budget layer needs of a ledger: :class:`BudgetLedger` (SQLite) or
    :class:`~aiapp.gateway.budgets.RedisBudgetLedger` (several processes or machines)."""

    def reserve(self, claims: Sequence[Claim], amount_usd: float) -> Reservation: ...

    def settle(self, reservation: Reservation, cost_usd: float) -> None: ...

    def release(self, reservation: Reservation) -> None: ...

    def spent(self, scope: str, name: str, window: BudgetWindow = "daily") -> tuple[float, float]: ...

    def close(self) -> None: ...


def open_ledger(settings: Settings, *, clock: Clock | None = None) -> Ledger:
    """The ledger ``settings`` select: Redis when ``redis_url`` is set, else ``$AIAPP_HOME/budgets.db``."""
    ttl = settings.budgets.hold_ttl_s
    if settings.redis_url:
        from aiapp.gateway.budgets._redis_ledger import RedisBudgetLedger

        return RedisBudgetLedger(settings.redis_url, clock=clock, hold_ttl_s=ttl)
    return BudgetLedger(settings.home / "budgets.db", clock=clock, hold_ttl_s=ttl)


class BudgetLedger:
    """Spending and holds per budget, in SQLite.

    Args:
        path: The database file (``":memory:"`` for a throwaway ledger).
        clock: Wall-clock time decides the period.
        hold_ttl_s: A hold older than this no longer counts (its call must have died).
    """

    def __init__(self, path: Path | str, *, clock: Clock | None = None, hold_ttl_s: float = 3600.0) -> None:
        self.path = str(path)
        self.clock: Clock = clock or SystemClock()
        self.hold_ttl_s = hold_ttl_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                if self.path != ":memory:":
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(f"cannot open the budget ledger: {exc}", path=self.path) from exc
            self._conn = conn
        return self._conn

    def reserve(self, claims: Sequence[Claim], amount_usd: float) -> Reservation:
        """Hold ``amount_usd`` on every claimed budget, or refuse if any would go over its limit.

        Raises:
            BudgetExceededError: naming the first budget that does not fit; nothing is held.
        """
        now = self.clock.time()
        reservation = Reservation(
            secrets.token_hex(8),
            amount_usd,
            tuple((c.id, period_of(c.budget.window, now)) for c in claims),
        )
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM holds WHERE created_at < ?", (now - self.hold_ttl_s,))
                for claim, (scope, period) in zip(claims, reservation.holds, strict=True):
                    spent, held = self._totals(db, scope, period)
                    if spent + held + amount_usd > claim.budget.limit_usd + _EPSILON:
                        raise BudgetExceededError(
                            scope=claim.scope,
                            name=claim.name,
                            spent_usd=spent,
                            reserved_usd=held,
                            limit_usd=claim.budget.limit_usd,
                            needed_usd=amount_usd,
                            window=claim.budget.window,
                            period=period,
                        )
                db.executemany(
                    "INSERT INTO holds (id, scope, period, amount_usd, created_at) VALUES (?, ?, ?, ?, ?)",
                    [(reservation.id, scope, period, amount_usd, now) for scope, period in reservation.holds],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return reservation

    def settle(self, reservation: Reservation, cost_usd: float) -> None:
        """Replace the hold with what the call really cost. Idempotent."""
        self._finish(reservation, cost_usd)

    def release(self, reservation: Reservation) -> None:
        """Drop the hold: the call spent nothing. Idempotent."""
        self._finish(reservation, None)

    def _finish(self, reservation: Reservation, cost_usd: float | None) -> None:
        if reservation.done:
            return
        reservation.done = True
        now = self.clock.time()
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM holds WHERE id = ?", (reservation.id,))
                if cost_usd is not None:
                    db.executemany(
                        "INSERT INTO spend (scope, period, spent_usd, calls, updated_at) VALUES (?, ?, ?, 1, ?)"
                        " ON CONFLICT (scope, period) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd,"
                        " calls = calls + 1, updated_at = excluded.updated_at",
                        [(scope, period, max(0.0, cost_usd), now) for scope, period in reservation.holds],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def spent(self, scope: str, name: str, window: BudgetWindow = "daily") -> tuple[float, float]:
        """``(spent, reserved)`` in USD for the current period of a budget."""
        period = period_of(window, self.clock.time())
        with self._lock:
            return self._totals(self._db(), f"{scope}:{name}", period)

    def _totals(self, db: sqlite3.Connection, scope: str, period: str) -> tuple[float, float]:
        row = db.execute(
            "SELECT spent_usd FROM spend WHERE scope = ? AND period = ?", (scope, period)
        ).fetchone()
        held = db.execute(
            "SELECT COALESCE(SUM(amount_usd), 0) FROM holds WHERE scope = ? AND period = ? AND created_at >= ?",
            (scope, period, self.clock.time() - self.hold_ttl_s),
        ).fetchone()[0]
        return (float(row[0]) if row else 0.0), float(held)

    def close(self) -> None:
        """Close the database (it reopens on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
