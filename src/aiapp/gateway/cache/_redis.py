"""A cache shared by several processes or machines: Redis (``cache: {backend: redis, url: ...}``).

The client comes from :mod:`aiapp.gateway._redis` (the one module that imports ``redis``). Entries
are plain Redis strings under ``aiapp:cache:v1:<key>`` with Redis's own expiry, so any Redis
eviction policy works.
"""

from __future__ import annotations

import threading
from typing import Any

from aiapp.gateway._redis import safe_url, sync_client

PREFIX = "aiapp:cache:v1:"


class RedisCacheStore:
    """A :class:`~aiapp.gateway.cache.CacheStore` on a Redis server.

    Args:
        url: ``redis://[user:password@]host:port/db`` (or ``rediss://`` for TLS).
        prefix: Prepended to every key.
        timeout_s: Socket connect and read timeout; a slow cache must not stall calls.
    """

    blocking_reads = True  # a network round trip: the cache layer reads off the event loop

    def __init__(self, url: str, *, prefix: str = PREFIX, timeout_s: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._client: Any = None
        self._lock = threading.Lock()

    def _redis(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = sync_client(self.url, timeout_s=self.timeout_s, field="cache.backend")
        return self._client

    def get(self, key: str) -> str | None:
        """The value under ``key``, or ``None``."""
        value = self._redis().get(self.prefix + key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def put(self, key: str, value: str, *, ttl_s: float | None) -> None:
        """Store ``value`` with Redis expiry (``ttl_s=None`` keeps it until evicted)."""
        px = None if ttl_s is None else max(1, int(ttl_s * 1000))
        self._redis().set(self.prefix + key, value.encode(), px=px)

    def ping(self) -> bool:
        """Whether the server answers."""
        return bool(self._redis().ping())

    def close(self) -> None:
        """Close the connection pool (reconnects on next use)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __repr__(self) -> str:
        return f"<RedisCacheStore {safe_url(self.url)}>"
