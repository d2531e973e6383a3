"""Virtual keys for ``aiapp serve``: who may call, which routes, how fast, and on what budget.

A key looks like ``sk-aiapp-<id>_<secret>``. It is shown once, when created; the store keeps only
``sha256(secret)`` next to the public ``id``, so a request is looked up by id in O(1) and then
verified with :func:`hmac.compare_digest`. SHA-256 and not scrypt/PBKDF2: the secret is 256 random
bits, not a password a person chose, so there is nothing for a slow hash to protect against
(guessing it is out of reach either way), and a slow hash would cost every request milliseconds.

Storage is SQLite at ``$AIAPP_HOME/keys.db`` (WAL, each write one transaction, file mode 0600), or
Redis when ``redis_url`` is set, so every ``aiapp serve`` process and replica sees the same keys.
Revoking a key takes effect on the next request everywhere. Both stores keep verified records in
memory and check, on every request, one cheap counter that every revocation moves: SQLite's
``PRAGMA data_version`` (another connection wrote), Redis's ``aiapp:keys:v1:generation`` (one
``GET``, against an ``HGETALL`` and a record to decode; bumped by ``revoke`` in the same
transaction as the revocation). A Redis record is also re-read after :data:`CACHE_TTL_S`.

Limits per key (``rpm``, ``tpm``) are a sliding minute, in process for SQLite, in Redis (one
atomic Lua script) when configured, so several processes share them. Budgets per key are not
enforced here but by the gateway's budget layer, the one place budgets are enforced: the server
passes :attr:`KeyRecord.budget_metadata` with each call. There is no master key: every request
needs a key, and every key's budget applies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiapp.config import Limits
from aiapp.errors import ConfigError, InputError, LimitExceededError
from aiapp.gateway._clock import Clock, SystemClock
from aiapp.gateway._ratelimit import WINDOW_S, RateLimiter, Ticket
from aiapp.gateway._redis import async_client, redis_errors, safe_url, sync_client
from aiapp.server._keydb import KeyRecord, SQLiteKeys, from_redis, redis_fields

if TYPE_CHECKING:
    from aiapp.config import Settings

KEY_PREFIX = "sk-aiapp-"
REDIS_PREFIX = "aiapp:keys:v1:"
_ID_LEN = 12
_KEY_RE = re.compile(rf"{KEY_PREFIX}([0-9a-f]{{{_ID_LEN}}})_([A-Za-z0-9_-]{{20,128}})")
_NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
GENERATION = REDIS_PREFIX + "generation"
#: Longest a verified Redis record is reused, even while the generation stays the same.
CACHE_TTL_S = 30.0


class AuthFailure(Exception):
    """A request refused by the key store, with the HTTP status the server answers.

    Attributes:
        status: 401 (no, unknown, revoked or expired key), 403 (route not allowed) or 429 (over rpm/tpm).
        message: What happened, for the client.
        code: OpenAI-style error code (``invalid_api_key``, ``model_not_allowed``, ``rate_limit_exceeded``).
        retry_after: Seconds until a 429 could succeed, when known.
    """

    def __init__(self, status: int, message: str, code: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.retry_after = retry_after


@dataclass
class Admission:
    """One admitted request: hand it back to :meth:`KeyStore.settle` with the tokens it used."""

    record: KeyRecord
    route: str
    estimated_tokens: int
    ticket: Ticket | None = None
    entry: str | None = None  # the Redis limiter's entry
    done: bool = field(default=False, compare=False)


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` in seconds.

    Raises:
        InputError: for anything else.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if match is None:
        raise InputError(
            f"cannot read the duration {text!r}: write a number and a unit, like 30d, 12h or 90m"
        )
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    if seconds <= 0:
        raise InputError(f"the duration {text!r} must be longer than zero")
    return seconds


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _refused(message: str) -> AuthFailure:
    return AuthFailure(401, message, "invalid_api_key")


# Sliding-minute rpm/tpm per key, shared by every process. KEYS: entries zset (id -> admitted_at),
# tokens hash (id -> tokens). ARGV: now, window, rpm (0: none), tpm (0: none), tokens, entry id.
# Returns {1} when admitted, else {0, limit, wait seconds as a string ('-1': never fits)}.
_ADMIT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, tokens, id = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = #live / 2
if rpm > 0 and count >= rpm then
  return {0, 'rpm', tostring(tonumber(live[2 * (count - rpm) + 2]) + window - now)}
end
if tpm > 0 then
  if tokens > tpm then return {0, 'tpm', '-1'} end
  local used = 0
  local amounts = {}
  for i = 1, count do
    local t = tonumber(redis.call('HGET', KEYS[2], live[2 * i - 1]) or '0')
    amounts[i] = t
    used = used + t
  end
  if used + tokens > tpm then
    local excess, freed = used + tokens - tpm, 0
    for i = 1, count do
      freed = freed + amounts[i]
      if freed >= excess then return {0, 'tpm', tostring(tonumber(live[2 * i]) + window - now)} end
    end
    return {0, 'tpm', tostring(window)}
  end
end
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSET', KEYS[2], id, tokens)
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 5)
redis.call('EXPIRE', KEYS[2], math.ceil(window) + 5)
return {1}
"""

# KEYS: entries, tokens. ARGV: entry id, tokens used. Only an entry still in the window is updated.
_SETTLE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return 1
"""


class KeyStore:
    """Virtual keys: create, list and revoke them; authenticate, admit and settle requests.

    Args:
        home: The state directory (``$AIAPP_HOME``); keys live in ``keys.db`` there.
        redis_url: Keep keys and their rate limits in Redis instead (shared by every process).
        clock: Time for expiry and rate windows.
    """

    def __init__(self, home: Path, *, redis_url: str | None = None, clock: Clock | None = None) -> None:
        self.home = Path(home)
        self.redis_url = redis_url
        self.clock: Clock = clock or SystemClock()
        self._sqlite = None if redis_url else SQLiteKeys(self.home / "keys.db")
        self._limiters: dict[str, RateLimiter] = {}
        self._limiters_lock = threading.Lock()
        self._sync: Any = None
        self._async: tuple[asyncio.AbstractEventLoop, Any, dict[str, Any]] | None = None
        # Redis records by id: (record and secret hash, the generation read with it, reuse until)
        self._verified: dict[str, tuple[tuple[KeyRecord, str], Any, float]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> KeyStore:
        """The key store ``settings`` select (Redis when ``redis_url`` is set)."""
        return cls(settings.home, redis_url=settings.redis_url, clock=clock)

    # -- management (the CLI) --------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        *,
        routes: list[str] | tuple[str, ...] | None = None,
        budget_usd: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        expires_in_s: float | None = None,
    ) -> tuple[KeyRecord, str]:
        """Make a key. Returns its record and the raw key, which is never available again.

        Raises:
            InputError: a bad name or limit, or a live key with this name exists.
        """
        if not _NAME_RE.fullmatch(name):
            raise InputError(f"key name {name!r} may use 1-64 letters, digits and '_', '-', '.', '@'")
        for label, value in (
            ("budget_usd", budget_usd),
            ("rpm", rpm),
            ("tpm", tpm),
            ("expires", expires_in_s),
        ):
            if value is not None and value <= 0:
                raise InputError(f"{label} must be greater than zero (leave it out for no limit)")
        clean = tuple(dict.fromkeys(r.strip() for r in routes if r.strip())) if routes is not None else None
        if clean is not None and not clean:
            raise InputError("routes is empty: name at least one route, or leave it out to allow all")
        now = self.clock.time()
        key_id = secrets.token_hex(_ID_LEN // 2)
        secret = secrets.token_urlsafe(32)
        record = KeyRecord(
            id=key_id,
            name=name,
            routes=clean,
            budget_usd=None if budget_usd is None else float(budget_usd),
            rpm=rpm,
            tpm=tpm,
            expires_at=None if expires_in_s is None else now + expires_in_s,
            created_at=now,
            revoked=False,
        )
        if self._sqlite is not None:
            self._sqlite.insert(record, _hash(secret))
        else:
            self._redis_insert(record, _hash(secret))
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first, revoked and expired ones included."""
        if self._sqlite is not None:
            return self._sqlite.all()
        client = self._sync_client()
        ids = sorted(
            i.decode() if isinstance(i, bytes) else str(i)
            for i in self._redis_call(client.smembers, REDIS_PREFIX + "index")
        )
        records = []
        for key_id in ids:
            fields = self._redis_call(client.hgetall, REDIS_PREFIX + "key:" + key_id)
            if fields:
                records.append(from_redis(fields)[0])
        return sorted(records, key=lambda r: r.created_at)

    def revoke(self, name_or_id: str) -> list[KeyRecord]:
        """Revoke the live keys with this name, or the key with this id; at once, in every process.

        Raises:
            InputError: no such key.
        """
        matches = [
            r for r in self.list_keys() if r.id == name_or_id or (r.name == name_or_id and not r.revoked)
        ]
        if not matches:
            raise InputError(f"no key named {name_or_id!r} (or with that id); see `aiapp keys list`")
        ids = [r.id for r in matches]
        if self._sqlite is not None:
            self._sqlite.revoke(ids)
        else:
            pipe = self._sync_client().pipeline(transaction=True)
            for key_id in ids:
                pipe.hset(REDIS_PREFIX + "key:" + key_id, "revoked", "1")
            pipe.incr(GENERATION)  # every process's cached records are stale from now on
            self._redis_call(pipe.execute)
        return [KeyRecord(**{**r.__dict__, "revoked": True}) for r in matches]

    # -- requests (the server) -------------------------------------------------------------------

    async def authenticate(self, authorization_header: str | None) -> KeyRecord:
        """The key behind ``Authorization: Bearer sk-aiapp-...``.

        Raises:
            AuthFailure: 401 when the header is missing or malformed, or the key is unknown,
                revoked or expired.
        """
        if not authorization_header:
            raise _refused(
                "no API key: send Authorization: Bearer sk-aiapp-... (create one with `aiapp keys create`)"
            )
        scheme, _, token = authorization_header.strip().partition(" ")
        match = _KEY_RE.fullmatch(token.strip()) if scheme.lower() == "bearer" else None
        if match is None:
            raise _refused("invalid API key: expected Authorization: Bearer sk-aiapp-...")
        key_id, secret = match.group(1), match.group(2)
        found = self._sqlite.lookup(key_id) if self._sqlite is not None else await self._redis_lookup(key_id)
        if found is None or not hmac.compare_digest(found[1], _hash(secret)):
            raise _refused("invalid API key: no such key")
        record = found[0]
        if record.revoked:
            raise _refused(f"API key {record.name!r} has been revoked")
        if record.expires_at is not None and self.clock.time() >= record.expires_at:
            raise _refused(f"API key {record.name!r} has expired")
        return record

    def allowed_routes(self, record: KeyRecord, all_routes: list[str]) -> list[str]:
        """The routes of ``all_routes`` this key may call, in order."""
        if record.routes is None:
            return list(all_routes)
        return [route for route in all_routes if route in record.routes]

    async def admit(self, record: KeyRecord, route: str, estimated_tokens: int) -> Admission:
        """Let one request through on ``route``, counting it against the key's rpm/tpm.

        Raises:
            AuthFailure: 403 when the key may not use the route; 429 (with ``retry_after`` when a
                wait would help) when the request is over the key's rpm or tpm.
        """
        if record.routes is not None and route not in record.routes:
            raise AuthFailure(
                403,
                f"API key {record.name!r} may not use route {route!r} (it may use: {', '.join(record.routes)})",
                "model_not_allowed",
            )
        admission = Admission(record, route, estimated_tokens)
        if record.rpm is None and record.tpm is None:
            return admission
        if self.redis_url is None:
            try:
                admission.ticket = self._limiter(record).acquire(estimated_tokens)
            except LimitExceededError as exc:
                raise AuthFailure(
                    429, f"API key {record.name!r}: {exc}", "rate_limit_exceeded", retry_after=exc.retry_after
                ) from exc
            return admission
        entry = secrets.token_hex(8)
        reply = await self._redis_script(
            "admit",
            _ADMIT,
            self._limit_keys(record),
            [
                repr(self.clock.time()),
                repr(WINDOW_S),
                record.rpm or 0,
                record.tpm or 0,
                estimated_tokens,
                entry,
            ],
        )
        if int(reply[0]) != 1:
            limit = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            wait = float(reply[2])
            retry_after = None if wait < 0 else max(0.0, wait)
            detail = (
                f"{record.rpm} requests per minute reached"
                if limit == "rpm"
                else f"{record.tpm} tokens per minute reached (this request may use {estimated_tokens})"
            )
            after = f"; retry in {retry_after:.1f}s" if retry_after is not None else "; lower max_tokens"
            raise AuthFailure(
                429,
                f"API key {record.name!r}: {limit} limit: {detail}{after}",
                "rate_limit_exceeded",
                retry_after=retry_after,
            )
        admission.entry = entry
        return admission

    async def settle(self, admission: Admission, used_tokens: int | None) -> None:
        """Count the tokens the request really used (``None``: keep the estimate). Idempotent."""
        if admission.done:
            return
        admission.done = True
        if used_tokens is None:
            return
        if admission.ticket is not None:
            admission.ticket.settle(used_tokens)
        elif admission.entry is not None:
            await self._redis_script(
                "settle", _SETTLE, self._limit_keys(admission.record), [admission.entry, used_tokens]
            )

    async def ping(self) -> bool:
        """Whether the key storage answers (for ``/ready``)."""
        if self._sqlite is not None:
            return self._sqlite.ping()
        try:
            client, _ = self._async_client()
            return bool(await client.ping())
        except redis_errors():
            return False

    def close(self) -> None:
        """Close connections (they reopen on next use). Call :meth:`aclose` from async code."""
        if self._sqlite is not None:
            self._sqlite.close()
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        self._async = None

    async def aclose(self) -> None:
        """Close connections, including the async Redis client."""
        if self._async is not None:
            await self._async[1].aclose()
            self._async = None
        self.close()

    def __repr__(self) -> str:
        where = safe_url(self.redis_url) if self.redis_url else str(self.home / "keys.db")
        return f"<KeyStore {where}>"

    # -- internals -------------------------------------------------------------------------------

    def _limiter(self, record: KeyRecord) -> RateLimiter:
        with self._limiters_lock:
            limiter = self._limiters.get(record.id)
            if limiter is None:
                limiter = RateLimiter(Limits(rpm=record.rpm, tpm=record.tpm), self.clock)
                self._limiters[record.id] = limiter
            return limiter

    @staticmethod
    def _limit_keys(record: KeyRecord) -> list[str]:
        base = f"{REDIS_PREFIX}limit:{{{record.id}}}:"
        return [base + "entries", base + "tokens"]

    def _unreachable(self, exc: BaseException) -> ConfigError:
        return ConfigError(
            f"cannot reach the key store at {safe_url(self.redis_url or '')}: {exc}", field="redis_url"
        )

    def _sync_client(self) -> Any:
        if self._sync is None:
            self._sync = sync_client(self.redis_url or "", field="redis_url")
        return self._sync

    def _redis_call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except redis_errors() as exc:
            raise self._unreachable(exc) from exc

    def _redis_insert(self, record: KeyRecord, secret_sha256: str) -> None:
        live = [r for r in self.list_keys() if r.name == record.name and not r.revoked]
        if any(r.expires_at is None or r.expires_at > record.created_at for r in live):
            raise InputError(f"a live key named {record.name!r} exists; revoke it first or pick another name")
        client = self._sync_client()
        pipe = client.pipeline(transaction=True)
        pipe.hset(REDIS_PREFIX + "key:" + record.id, mapping=redis_fields(record, secret_sha256))
        pipe.sadd(REDIS_PREFIX + "index", record.id)
        self._redis_call(pipe.execute)

    def _async_client(self) -> tuple[Any, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            self._async = (loop, async_client(self.redis_url or "", field="redis_url"), {})
        return self._async[1], self._async[2]

    async def _redis_lookup(self, key_id: str) -> tuple[KeyRecord, str] | None:
        client, _ = self._async_client()
        try:
            generation = await client.get(GENERATION)
            cached = self._verified.get(key_id)
            now = self.clock.monotonic()
            if cached is not None and cached[1] == generation and now < cached[2]:
                return cached[0]
            fields = await client.hgetall(REDIS_PREFIX + "key:" + key_id)
        except redis_errors() as exc:
            raise self._unreachable(exc) from exc
        if not fields:
            return None
        found = from_redis(fields)
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key_id] = (found, generation, now + CACHE_TTL_S)
        return found

    async def _redis_script(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        client, scripts = self._async_client()
        if name not in scripts:
            scripts[name] = client.register_script(source)
        try:
            return await scripts[name](keys=keys, args=args)
        except redis_errors() as exc:
            raise self._unreachable(exc) from exc


__all__ = [
    "CACHE_TTL_S",
    "GENERATION",
    "KEY_PREFIX",
    "REDIS_PREFIX",
    "Admission",
    "AuthFailure",
    "KeyRecord",
    "KeyStore",
    "parse_duration",
]
