"""The cache layer: a :class:`Model` that answers from the cache and stores what its inner model says.

Modes (``cache.mode`` or ``AIAPP_CACHE_MODE``):

- ``on``: read, and on a miss call and store (entries expire after ``ttl_s``);
- ``record``: always call, store every reply without expiry (refreshes a recording);
- ``replay``: only read; a request that was not recorded raises
  :class:`~aiapp.errors.ReplayMissError` naming the route, the request's key and its last user
  message. Nothing reaches a provider, so CI runs hermetically.

A hit returns a fresh :class:`Completion` with ``cache_hit=True``, zero usage (it cost nothing) and
``attempts=0``; the trace gets ``cache`` (``hit``, ``semantic_hit``, ``miss``), ``cache_key`` and,
on hits, ``cache_saved_usd``. A call with ``metadata={"cache": False}`` bypasses the cache;
``{"cache": "refresh"}`` skips reading but stores the new reply.

A failing cache backend (Redis down) never fails a call in ``on``/``record`` mode: it reads as a
miss and the trace notes ``cache_error``. Streams are served from the cache as word chunks, and a
streamed reply is stored once it has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiapp._gateway_config import CacheMode
from aiapp.errors import ReplayMissError
from aiapp.gateway._context import current_call
from aiapp.gateway._model import Model, collect, completion_to_chunks
from aiapp.gateway.cache._keys import last_user_text, preview, request_key, semantic_scope
from aiapp.gateway.cache._store import CacheStore
from aiapp.tracing import annotate
from aiapp.types import CallOptions, Completion, Message, StreamChunk, Usage

if TYPE_CHECKING:
    from aiapp.gateway.cache._semantic import SemanticIndex, Vector
    from aiapp.gateway.embedders import Embedder

log = logging.getLogger("aiapp.cache")

_STORED_FIELDS = {"text", "tool_calls", "finish_reason", "model", "usage", "deployment"}


@dataclass
class _Lookup:
    """What the read side found out, for the write side."""

    key: str | None = None
    hit: Completion | None = None
    scope: str | None = None
    text: str | None = None
    vector: Vector | None = None
    semantic: bool = False  # an exact miss that the semantic index should be asked about
    done: bool = False  # bypassed, recording, or an exact hit: nothing more to look up


_FREE = Usage(cost_usd=0.0)  # frozen, so one instance serves every hit


class CachedModel(Model):
    """Wraps a route's model with the exact cache, the semantic cache and record/replay.

    Args:
        inner: The model to call on a miss.
        route: The route's name (for errors and traces).
        identity: What stands behind the route (see :func:`~aiapp.gateway.cache.route_identity`).
        store: Where replies live.
        mode: ``on``, ``record`` or ``replay``.
        ttl_s: Entry lifetime in ``on`` mode (``None``: forever).
        semantic: The semantic index, when the semantic cache is on.
        embedder: Returns the embedder for the semantic cache (called on first use).
    """

    def __init__(
        self,
        inner: Model,
        *,
        route: str,
        identity: str,
        store: CacheStore,
        mode: CacheMode = "on",
        ttl_s: float | None = None,
        semantic: SemanticIndex | None = None,
        embedder: Callable[[], Embedder] | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.info = inner.info
        self.route = route
        self.identity = identity
        self.store = store
        self.mode = mode
        self.ttl_s = ttl_s
        self.semantic = semantic if mode == "on" else None
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None

    # -- read and write ---------------------------------------------------------------------------

    def _read(self, key: str) -> str | None:
        try:
            return self.store.get(key)
        except Exception as exc:  # a cache must not take the gateway down with it
            self._backend_error("read", exc)
            return None

    def _backend_error(self, action: str, exc: Exception) -> None:
        annotate(cache_error=f"{type(exc).__name__}: {exc}")
        log.warning("cache %s failed (%r): %s", action, self.store, exc)

    def _lookup(self, messages: Sequence[Message], options: CallOptions | None) -> _Lookup:
        found = self._exact(messages, options)
        if found.semantic:
            self._by_meaning(found)
        return self._settle(found, messages)

    def _exact(self, messages: Sequence[Message], options: CallOptions | None) -> _Lookup:
        """The exact lookup; on a miss, what the semantic lookup needs (``found.semantic``)."""
        context = current_call()
        switch = context.metadata.get("cache", True) if context is not None else True
        if switch is False or switch == "off":
            annotate(cache="bypass")
            return _Lookup(done=True)
        key = request_key(self.identity, messages, options, context)
        annotate(cache_key=key[:12])
        if self.mode == "record" or switch == "refresh":
            annotate(cache="record" if self.mode == "record" else "refresh")
            return _Lookup(key, done=True)
        raw = self._read(key)
        if raw is not None:
            annotate(cache="hit")
            return _Lookup(key, hit=self._hit(raw), done=True)
        found = _Lookup(key)
        if self.semantic is not None:
            found.scope = semantic_scope(self.identity, messages, options, context)
            found.text = last_user_text(messages)
            found.semantic = found.scope is not None and found.text is not None
        return found

    def _by_meaning(self, found: _Lookup) -> None:
        """Embed the last user message and look for an earlier request that says the same."""
        assert self.semantic is not None and found.scope is not None and found.text is not None
        found.vector = self._embed(found.text)
        match = self.semantic.lookup(found.scope, found.text, found.vector)
        raw = self._read(match.key) if match is not None else None
        if match is not None and raw is not None:
            annotate(cache="semantic_hit", cache_similarity=round(match.similarity, 4))
            found.hit = self._hit(raw)

    def _settle(self, found: _Lookup, messages: Sequence[Message]) -> _Lookup:
        if found.done or found.hit is not None:
            return found
        if self.mode == "replay":
            raise ReplayMissError(
                route=self.route, key=str(found.key)[:12], preview=preview(last_user_text_any(messages))
            )
        annotate(cache="miss")
        return found

    def _embed(self, text: str) -> Vector:
        if self._embedder is None:
            if self._embedder_factory is None:
                raise RuntimeError("the semantic cache has no embedder")
            self._embedder = self._embedder_factory()
        vector: Vector = self._embedder.embed([text], kind="query")[0]
        return vector

    def _hit(self, raw: str) -> Completion:
        stored = Completion.model_validate_json(raw)
        annotate(cache_saved_usd=stored.usage.cost_usd)
        return stored.model_copy(update={"cache_hit": True, "usage": _FREE, "attempts": 0, "latency_ms": 0.0})

    def _write(self, found: _Lookup, completion: Completion) -> None:
        if found.key is None or completion.finish_reason == "error":
            return
        value = completion.model_dump_json(include=_STORED_FIELDS)
        ttl = None if self.mode == "record" else self.ttl_s
        try:
            self.store.put(found.key, value, ttl_s=ttl)
        except Exception as exc:
            self._backend_error("write", exc)
            return
        if self.semantic is not None and found.scope and found.text and found.vector is not None:
            self.semantic.add(found.scope, found.text, found.vector, found.key)

    # -- the Model interface ----------------------------------------------------------------------

    async def _alookup(self, messages: Sequence[Message], options: CallOptions | None) -> _Lookup:
        # SQLite in WAL mode never makes a reader wait, so exact lookups stay on the loop and an
        # exact hit costs no thread hop; a network store (Redis) is read from a worker thread, and
        # so is the semantic lookup (one embedding, a few milliseconds: not on the loop).
        if getattr(self.store, "blocking_reads", False):
            return await asyncio.to_thread(self._lookup, messages, options)
        found = self._exact(messages, options)
        if found.semantic:
            await asyncio.to_thread(self._by_meaning, found)
        return self._settle(found, messages)

    async def _awrite(self, found: _Lookup, completion: Completion) -> None:
        # A write may wait on another process's lock (or the network): never on the loop.
        if found.key is not None and completion.finish_reason != "error":
            await asyncio.to_thread(self._write, found, completion)

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """From the cache, or from the inner model (and then stored)."""
        found = await self._alookup(messages, options)
        if found.hit is not None:
            return found.hit
        completion = await self.inner.acomplete(messages, options)
        await self._awrite(found, completion)
        return completion

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream a cached reply as word chunks, or stream the inner model's and store it at the end."""
        found = await self._alookup(messages, options)
        if found.hit is not None:
            for chunk in completion_to_chunks(found.hit):
                yield chunk
            return
        chunks: list[StreamChunk] = []
        async for chunk in self.inner.astream(messages, options):
            chunks.append(chunk)
            yield chunk
        await self._awrite(found, collect(chunks, model=self.inner.name))

    def close(self) -> None:
        """Close the inner model and the store (which reopens on next use)."""
        self.inner.close()
        self._close_stores()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self.inner.aclose()
        self._close_stores()

    def _close_stores(self) -> None:
        self.store.close()
        if self.semantic is not None:
            self.semantic.close()


def last_user_text_any(messages: Sequence[Message]) -> str:
    """The content of the last user message anywhere in the conversation (for error messages)."""
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""
