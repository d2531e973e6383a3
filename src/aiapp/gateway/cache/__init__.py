"""Response caching for the gateway: exact, semantic, and record/replay for hermetic CI.

Turned on by a ``cache:`` section in ``configs/aiapp.yaml`` (see :class:`aiapp.config.CacheSettings`)::

    cache:
      backend: sqlite            # or redis, with url: redis://127.0.0.1:6379/0
      ttl_s: 604800
      semantic: {enabled: true}  # off by default; threshold 0.93 (see benchmarks/semantic_cache.py)

``AIAPP_CACHE_MODE=record`` stores every reply; ``AIAPP_CACHE_MODE=replay`` answers only from
recordings and fails (:class:`~aiapp.errors.ReplayMissError`) on anything new.

Importing this package registers the cache layer; Redis, numpy and the embedder load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiapp.gateway.cache._keys import request_key, route_identity, semantic_scope
from aiapp.gateway.cache._layer import cache_layer, open_store
from aiapp.gateway.cache._model import CachedModel
from aiapp.gateway.cache._store import CacheStore, SQLiteCacheStore

if TYPE_CHECKING:
    from aiapp.gateway.cache._redis import RedisCacheStore
    from aiapp.gateway.cache._semantic import SemanticIndex, SemanticMatch

__all__ = [
    "CacheStore",
    "CachedModel",
    "RedisCacheStore",
    "SQLiteCacheStore",
    "SemanticIndex",
    "SemanticMatch",
    "cache_layer",
    "open_store",
    "request_key",
    "route_identity",
    "semantic_scope",
]

_LAZY = {
    "RedisCacheStore": "aiapp.gateway.cache._redis",
    "SemanticIndex": "aiapp.gateway.cache._semantic",
    "SemanticMatch": "aiapp.gateway.cache._semantic",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
