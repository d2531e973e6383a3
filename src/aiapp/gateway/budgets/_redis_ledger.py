"""The budget ledger in Redis: one budget enforced by every process and machine that shares it.

Selected by ``redis_url:`` in ``configs/aiapp.yaml``. Same contract as the SQLite
:class:`~aiapp.gateway.budgets.BudgetLedger`: a reservation checks every budget it touches and
records its holds in one atomic Lua script, so two calls — in two processes — can never both
squeeze under a limit that only one of them fits.

Layout, all under one hash tag so a script's keys share a Redis Cluster slot::

    aiapp:budget:v1:{b}:<scope>:<period>:spent   hash  spent (USD, HINCRBYFLOAT), calls, updated_at
    aiapp:budget:v1:{b}:<scope>:<period>:holds   zset  reservation id -> created_at
    aiapp:budget:v1:{b}:<scope>:<period>:amount  hash  reservation id -> USD held

A hold left by a crashed process stops counting after ``hold_ttl_s`` (and is deleted by the next
reservation); settled spending stays — daily periods are kept 40 days, monthly 400, total forever.
If Redis cannot be reached, calls are refused (a :class:`~aiapp.errors.ConfigError` naming the
URL): a budget that cannot be checked is never bypassed.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from typing import Any

from aiapp._gateway_config import BudgetWindow
from aiapp.errors import BudgetExceededError, ConfigError
from aiapp.gateway._clock import Clock, SystemClock
from aiapp.gateway._redis import redis_errors, safe_url, sync_client
from aiapp.gateway.budgets._ledger import Claim, Reservation, period_of

PREFIX = "aiapp:budget:v1:{b}:"
_KEEP_S = {"daily": 40 * 86400, "monthly": 400 * 86400, "total": 0}

# KEYS: (spent, holds, amount) per claim. ARGV: now, ttl, amount, id, then one limit per claim.
# Returns {0} when held, else {claim index (1-based), spent, held} as strings (Lua numbers
# would be truncated to integers in the reply).
_RESERVE = """
local now, ttl, amount, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local n = #KEYS / 3
for i = 0, n - 1 do
  local spentk, holdk, amountk = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  local stale = redis.call('ZRANGEBYSCORE', holdk, '-inf', '(' .. (now - ttl))
  if #stale > 0 then
    redis.call('ZREM', holdk, unpack(stale))
    redis.call('HDEL', amountk, unpack(stale))
  end
  local spent = tonumber(redis.call('HGET', spentk, 'spent') or '0')
  local held = 0
  for _, v in ipairs(redis.call('HVALS', amountk)) do held = held + tonumber(v) end
  if spent + held + amount > tonumber(ARGV[4 + i + 1]) + 1e-12 then
    return {i + 1, tostring(spent), tostring(held)}
  end
end
for i = 0, n - 1 do
  redis.call('ZADD', KEYS[3*i+2], now, id)
  redis.call('HSET', KEYS[3*i+3], id, tostring(amount))
  redis.call('EXPIRE', KEYS[3*i+2], math.ceil(ttl) + 60)
  redis.call('EXPIRE', KEYS[3*i+3], math.ceil(ttl) + 60)
end
return {0}
"""

# KEYS: (spent, holds, amount) per hold. ARGV: id, cost ('' to release), now, then keep-seconds per hold.
_FINISH = """
local id, cost, now = ARGV[1], ARGV[2], ARGV[3]
for i = 0, #KEYS / 3 - 1 do
  redis.call('ZREM', KEYS[3*i+2], id)
  redis.call('HDEL', KEYS[3*i+3], id)
  if cost ~= '' then
    redis.call('HINCRBYFLOAT', KEYS[3*i+1], 'spent', cost)
    redis.call('HINCRBY', KEYS[3*i+1], 'calls', 1)
    redis.call('HSET', KEYS[3*i+1], 'updated_at', now)
    local keep = tonumber(ARGV[4 + i])
    if keep > 0 then redis.call('EXPIRE', KEYS[3*i+1], keep) end
  end
end
return 1
"""

# KEYS: spent, holds, amount. ARGV: now, ttl. Returns {spent, held} as strings.
_TOTALS = """
local live = redis.call('ZRANGEBYSCORE', KEYS[2], tonumber(ARGV[1]) - tonumber(ARGV[2]), '+inf')
local held = 0
if #live > 0 then
  for _, v in ipairs(redis.call('HMGET', KEYS[3], unpack(live))) do
    if v then held = held + tonumber(v) end
  end
end
return {redis.call('HGET', KEYS[1], 'spent') or '0', tostring(held)}
"""


def _keys(scope: str, period: str) -> list[str]:
    base = f"{PREFIX}{scope}:{period}:"
    return [base + "spent", base + "holds", base + "amount"]


class RedisBudgetLedger:
    """Spending and holds per budget, in Redis (same interface as :class:`BudgetLedger`).

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).
        clock: Wall-clock time decides the period and the age of holds; processes sharing a ledger
            should have synchronised clocks (NTP), as for any shared daily budget.
        hold_ttl_s: A hold older than this no longer counts (its call must have died).
        timeout_s: Socket timeout for each round trip.
    """

    def __init__(
        self, url: str, *, clock: Clock | None = None, hold_ttl_s: float = 3600.0, timeout_s: float = 2.0
    ) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        self.hold_ttl_s = hold_ttl_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    def _script(self, name: str, source: str) -> Any:
        with self._lock:
            if self._client is None:
                self._client = sync_client(self.url, timeout_s=self.timeout_s, field="redis_url")
                self._scripts = {}
            if name not in self._scripts:
                self._scripts[name] = self._client.register_script(source)
            return self._scripts[name]

    def _run(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._script(name, source)
        try:
            return script(keys=keys, args=args)
        except redis_errors() as exc:
            raise ConfigError(
                f"cannot reach the budget ledger at {safe_url(self.url)}: {exc}; calls that draw on a "
                "budget are refused until it answers",
                field="redis_url",
            ) from exc

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
        keys = [k for scope, period in reservation.holds for k in _keys(scope, period)]
        args: list[Any] = [repr(now), repr(self.hold_ttl_s), repr(amount_usd), reservation.id]
        args += [repr(c.budget.limit_usd) for c in claims]
        reply = self._run("reserve", _RESERVE, keys, args)
        index = int(reply[0])
        if index:
            claim = claims[index - 1]
            raise BudgetExceededError(
                scope=claim.scope,
                name=claim.name,
                spent_usd=float(reply[1]),
                reserved_usd=float(reply[2]),
                limit_usd=claim.budget.limit_usd,
                needed_usd=amount_usd,
                window=claim.budget.window,
                period=reservation.holds[index - 1][1],
            )
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
        keys = [k for scope, period in reservation.holds for k in _keys(scope, period)]
        cost = "" if cost_usd is None else repr(max(0.0, cost_usd))
        args: list[Any] = [reservation.id, cost, repr(self.clock.time())]
        args += [_keep_s(period) for _, period in reservation.holds]
        self._run("finish", _FINISH, keys, args)

    def spent(self, scope: str, name: str, window: BudgetWindow = "daily") -> tuple[float, float]:
        """``(spent, reserved)`` in USD for the current period of a budget."""
        period = period_of(window, self.clock.time())
        reply = self._run(
            "totals",
            _TOTALS,
            _keys(f"{scope}:{name}", period),
            [repr(self.clock.time()), repr(self.hold_ttl_s)],
        )
        return float(reply[0]), float(reply[1])

    def ping(self) -> bool:
        """Whether the server answers."""
        try:
            self._script("totals", _TOTALS)
            return bool(self._client.ping())
        except redis_errors():
            return False

    def close(self) -> None:
        """Close the connection pool (it reconnects on next use)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
                self._scripts = {}

    def __repr__(self) -> str:
        return f"<RedisBudgetLedger {safe_url(self.url)}>"


def _keep_s(period: str) -> int:
    if period == "total":
        return _KEEP_S["total"]
    return _KEEP_S["daily"] if len(period) == 10 else _KEEP_S["monthly"]
