"""Registers the cache as gateway middleware (order 20: outside budgets, inside guards).

A cache hit therefore spends no budget and no rate limit, and guards still check cached replies.
One store (and one semantic index) per gateway serves all its routes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiapp.config import CacheSettings, Settings
from aiapp.gateway._clock import Clock
from aiapp.gateway._layers import LayerContext, register_layer
from aiapp.gateway._model import Model
from aiapp.gateway._shared import per_gateway
from aiapp.gateway.cache._keys import route_identity
from aiapp.gateway.cache._model import CachedModel
from aiapp.gateway.cache._store import CacheStore, SQLiteCacheStore

if TYPE_CHECKING:
    from aiapp.gateway.cache._semantic import SemanticIndex
    from aiapp.gateway.embedders import Embedder


def open_store(cache: CacheSettings, settings: Settings, clock: Clock | None = None) -> CacheStore:
    """The store the cache settings describe: SQLite (default) or Redis."""
    if cache.backend == "redis":
        from aiapp.gateway.cache._redis import RedisCacheStore

        assert cache.url is not None  # validated in CacheSettings
        return RedisCacheStore(cache.url)
    path = Path(cache.path).expanduser() if cache.path else settings.home / "cache.db"
    return SQLiteCacheStore(path, clock=clock)


@register_layer("cache", order=20)
def cache_layer(context: LayerContext, model: Model) -> Model | None:
    """Wrap a route with the response cache when ``cache:`` is configured and the route allows it."""
    cache = context.settings.cache
    if cache is None or cache.mode == "off":
        return None
    if context.config is not None and not context.config.cache:
        return None
    settings = context.settings
    clock = context.gateway.clock
    store = per_gateway(context.gateway, "cache.store", lambda: open_store(cache, settings, clock))
    semantic: SemanticIndex | None = None
    embedder: Callable[[], Embedder] | None = None
    if cache.semantic.enabled and cache.mode == "on":
        from aiapp.gateway.cache._semantic import SemanticIndex
        from aiapp.gateway.embedders import build_embedder

        options = cache.semantic
        # The local MiniLM at int8: a lookup's one embedding takes half the time of float32's.
        # Building it loads nothing (the model loads on the first embedding); its name (with
        # ``+int8``) keeps its vectors apart from another precision's in semantic_cache.db.
        model_of_meaning = per_gateway(
            context.gateway, "cache.embedder", lambda: build_embedder(options.embedder, precision="int8")
        )
        semantic = per_gateway(
            context.gateway,
            "cache.semantic",
            lambda: SemanticIndex(
                settings.home / "semantic_cache.db",
                embedder=model_of_meaning.name,
                threshold=options.threshold,
                min_length_ratio=options.min_length_ratio,
                max_entries=options.max_entries,
            ),
        )

        def make_embedder() -> Embedder:
            return model_of_meaning

        embedder = make_embedder

    return CachedModel(
        model,
        route=context.route,
        identity=route_identity(context.route, context.config, model.name),
        store=store,
        mode=cache.mode,
        ttl_s=cache.ttl_s,
        semantic=semantic,
        embedder=embedder,
    )
