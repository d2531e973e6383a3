"""The one seam every model sits behind: providers, fakes, routes, caches, budgets and guards.

A :class:`Model` is async only (``acomplete``, ``astream``); middleware wraps a model and is one.
Sync callers go through :func:`aiapp.gateway.run_sync` (see :mod:`aiapp.gateway._sync`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiapp.gateway._sync import sync_iterator, sync_method
from aiapp.types import CallOptions, Completion, FinishReason, Message, StreamChunk, ToolCall, Usage


@dataclass(frozen=True)
class ModelInfo:
    """What a model can do. The agent loop uses ``supports_tools`` to choose native tool calling."""

    supports_tools: bool = True
    supports_streaming: bool = True
    supports_json: bool = True


class Model:
    """Base class for anything that turns messages into a :class:`Completion`.

    The seam is async only: a subclass implements :meth:`acomplete` and, if it can stream
    natively, :meth:`astream` (otherwise the reply is split into word chunks). The sync
    :meth:`complete` and :meth:`stream` are conveniences over :func:`run_sync`/:func:`iter_sync`
    and may not be overridden, so there is never a hand-kept sync twin to drift.

    Attributes:
        name: The model's full name, e.g. ``openai/gpt-4o-mini`` or ``local/extractive``.
        info: Capabilities.
    """

    name: str = "model"
    info: ModelInfo = ModelInfo()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        twins = sorted(n for n in ("complete", "stream") if n in cls.__dict__)
        if twins:
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(twins)}: a Model implements only the async "
                "acomplete/astream; the sync calls are derived from them"
            )

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Run one call and return the whole reply."""
        if type(self).astream is Model.astream:
            raise NotImplementedError(f"{type(self).__name__} implements neither acomplete nor astream")
        return collect([c async for c in self.astream(messages, options)], model=self.name)

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream the reply. The last chunk carries ``finish_reason``, tool calls and usage."""
        completion = await self.acomplete(messages, options)
        for chunk in completion_to_chunks(completion):
            yield chunk

    complete = sync_method(acomplete)
    stream = sync_iterator(astream)

    async def aclose(self) -> None:
        """Release connections (async clients close on their own loop). Safe to call more than once."""
        self.close()

    def close(self) -> None:
        """Release connections. Safe to call more than once."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def completion_to_chunks(completion: Completion) -> Iterator[StreamChunk]:
    """Split a finished completion into word-sized chunks (for models that cannot stream natively)."""
    words = completion.text.split(" ")
    for word in words[:-1]:
        yield StreamChunk(delta=word + " ")
    yield StreamChunk(
        delta=words[-1] if words else "",
        tool_calls=completion.tool_calls,
        finish_reason=completion.finish_reason,
        usage=completion.usage,
    )


def collect(chunks: Sequence[StreamChunk] | Iterator[StreamChunk], *, model: str = "") -> Completion:
    """Assemble streamed chunks into one :class:`Completion`."""
    text: list[str] = []
    tool_calls: tuple[ToolCall, ...] = ()
    usage = Usage()
    finish: FinishReason = "stop"
    for chunk in chunks:
        text.append(chunk.delta)
        if chunk.tool_calls:
            tool_calls = chunk.tool_calls
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
    return Completion(
        text="".join(text), tool_calls=tool_calls, finish_reason=finish, usage=usage, model=model
    )
