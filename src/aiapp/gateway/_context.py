"""The gateway call in progress, for middleware layers: its route, prompt version and metadata.

A layer sees only ``(messages, options)`` through the :class:`~aiapp.gateway.Model` seam. What else
it needs — the prompt name@version for cache keys, a ``budget_key`` for budgets — the gateway
puts in a context variable around each call, and :func:`current_call` reads it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol


class _PromptLike(Protocol):
    @property
    def ref(self) -> str: ...

    @property
    def hash(self) -> str | None: ...


@dataclass(frozen=True)
class CallContext:
    """One gateway call.

    Attributes:
        route: The route called.
        prompt_ref: The prompt's ``name@version``, when the call came from a versioned prompt.
        prompt_hash: That prompt's content hash.
        metadata: The call's ``metadata`` (``budget_key`` selects a key budget; ``cache`` may be
            ``False``/``"off"`` to bypass the cache or ``"refresh"`` to skip reading it).
    """

    route: str
    prompt_ref: str | None = None
    prompt_hash: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Document:
    """A retrieved document passed along with a call, so guards can judge it by itself.

    Attributes:
        text: The text as it appears in the prompt.
        source: Where it came from (a corpus path); named in guard errors and traces.
        chunk_id: Its chunk id in the index.
    """

    text: str
    source: str = ""
    chunk_id: str = ""


_documents: contextvars.ContextVar[tuple[Document, ...]] = contextvars.ContextVar(
    "aiapp_documents", default=()
)


def current_documents() -> tuple[Document, ...]:
    """The retrieved documents passed with calls made in this context (see :func:`with_documents`)."""
    return _documents.get()


@contextmanager
def with_documents(documents: Sequence[Document | str]) -> Iterator[None]:
    """Pass retrieved documents with every gateway call made inside the block.

    Input guards screen each one on its own (a poisoned chunk is named, or dropped), and output
    guards (grounding) check replies against them instead of parsing ``<context>`` blocks.
    """
    docs = tuple(d if isinstance(d, Document) else Document(text=d) for d in documents)
    token = _documents.set(docs)
    try:
        yield
    finally:
        _documents.reset(token)


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("aiapp_call", default=None)


def current_call() -> CallContext | None:
    """The gateway call in progress in this task or thread, if any."""
    return _current.get()


@contextmanager
def calling(
    route: str, prompt_ref: _PromptLike | None = None, metadata: Mapping[str, Any] | None = None
) -> Iterator[CallContext]:
    """Make a call's context current inside the block (the gateway wraps each call in this)."""
    context = CallContext(
        route=route,
        prompt_ref=prompt_ref.ref if prompt_ref is not None else None,
        prompt_hash=prompt_ref.hash if prompt_ref is not None else None,
        metadata=metadata or {},
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
