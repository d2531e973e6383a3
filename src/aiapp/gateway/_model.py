"""The one seam every model sits behind: providers, fakes, routes and (later) caches and guards.

A :class:`Model` offers sync and async calls and streams. Subclasses implement at least one of
``complete``/``acomplete`` and at least one of ``stream``/``astream``; the base class derives the
others, so a provider that only has an async client still works from sync code and vice versa.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiapp.types import CallOptions, Completion, FinishReason, Message, StreamChunk, ToolCall, Usage

_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelInfo:
    """What a model can do. The agent loop uses ``supports_tools`` to choose native tool calling."""

    supports_tools: bool = True
    supports_streaming: bool = True
    supports_json: bool = True


class Model:
    """Base class for anything that turns messages into a :class:`Completion`.

    Attributes:
        name: The model's full name, e.g. ``openai/gpt-4o-mini`` or ``local/extractive``.
        info: Capabilities.
    """

    name: str = "model"
    info: ModelInfo = ModelInfo()

    def complete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Run one call and wait for the whole reply."""
        if type(self).acomplete is Model.acomplete:
            raise NotImplementedError(f"{type(self).__name__} implements neither complete nor acomplete")
        return run_sync(self.acomplete(messages, options))

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Async :meth:`complete`."""
        if type(self).complete is Model.complete:
            raise NotImplementedError(f"{type(self).__name__} implements neither complete nor acomplete")
        return await asyncio.to_thread(self.complete, messages, options)

    def stream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> Iterator[StreamChunk]:
        """Stream the reply. The last chunk carries ``finish_reason``, tool calls and usage."""
        if type(self).astream is not Model.astream:
            yield from _iter_async(self.astream(messages, options))
            return
        completion = self.complete(messages, options)
        yield from completion_to_chunks(completion)

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Async :meth:`stream`."""
        if type(self).stream is not Model.stream:
            for chunk in await asyncio.to_thread(lambda: list(self.stream(messages, options))):
                yield chunk
            return
        completion = await self.acomplete(messages, options)
        for chunk in completion_to_chunks(completion):
            yield chunk

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


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine from sync code, even when the caller is already inside an event loop.

    Inside a running loop the coroutine runs on a private loop in a helper thread, with a copy of
    the caller's context, so tracing spans opened by the caller still nest.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[_T] = []
    error: list[BaseException] = []
    context = contextvars.copy_context()

    def runner() -> None:
        try:
            result.append(context.run(asyncio.run, coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _iter_async(agen: AsyncIterator[StreamChunk]) -> Iterator[StreamChunk]:
    """Drive an async iterator from sync code on a private loop in a helper thread.

    If the caller stops iterating early, the helper notices on its next put and closes the
    async generator, so an abandoned stream does not leave a thread blocked forever.
    """
    items: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=64)
    stop = threading.Event()

    def put(item: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    async def pump() -> None:
        try:
            async for item in agen:
                if not put(("item", item)):
                    break
        except BaseException as exc:
            put(("error", exc))
        else:
            put(("done", None))
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()

    thread = threading.Thread(target=lambda: asyncio.run(pump()), daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "item":
                yield value  # type: ignore[misc]
            elif kind == "error":
                raise value  # type: ignore[misc]
            else:
                break
    finally:
        stop.set()
        thread.join(timeout=5)
