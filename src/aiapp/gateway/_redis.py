"""Redis connections for everything aiapp keeps in Redis: the cache, budgets, keys and rate limits.

The only module of aiapp that imports ``redis`` (the ``aiapp[redis]`` extra), on first use, so
``import aiapp`` never pays for it and a missing package is one clear :class:`ConfigError`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiapp.errors import ConfigError


def _module(field: str) -> Any:
    try:
        import redis
    except ImportError as exc:
        raise ConfigError(
            "a redis backend needs the redis package: pip install 'aiapp[redis]'", field=field
        ) from exc
    return redis


def sync_client(url: str, *, timeout_s: float = 2.0, field: str = "redis_url") -> Any:
    """A blocking ``redis.Redis`` client (with its own connection pool) for ``url``."""
    return _module(field).Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def async_client(url: str, *, timeout_s: float = 2.0, field: str = "redis_url") -> Any:
    """A ``redis.asyncio.Redis`` client for ``url``; use it on one event loop only."""
    _module(field)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a failed Redis round trip raises (connection, timeout, server errors)."""
    return (_module("redis_url").RedisError, OSError)


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
