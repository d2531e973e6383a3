"""The Model seam is async only; sync calls run on a persistent loop and stream chunk by chunk."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

import pytest

from aiapp.gateway import Model, collect, iter_sync, run_sync
from aiapp.types import CallOptions, Completion, Message, StreamChunk


class AsyncOnly(Model):
    name = "async-only"

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        return Completion(text=f"async says {messages[-1].content}")

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        for i in range(200):
            yield StreamChunk(delta=f"w{i} ")
        yield StreamChunk(finish_reason="stop")


class CompleteOnly(Model):
    name = "complete-only"

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        return Completion(text="one reply with several words")


def test_sync_calls_on_an_async_model() -> None:
    model = AsyncOnly()
    assert model.complete([Message.user("hi")]).text == "async says hi"
    assert collect(model.stream([Message.user("hi")])).text.startswith("w0 w1 ")


async def test_sync_call_from_inside_a_running_loop() -> None:
    # The Jupyter case: a cell's loop is running and the user calls the sync API.
    assert AsyncOnly().complete([Message.user("nested")]).text == "async says nested"
    assert collect(AsyncOnly().stream([Message.user("x")])).text.startswith("w0 ")


async def test_a_model_without_astream_streams_its_reply_as_words() -> None:
    chunks = [c async for c in CompleteOnly().astream([Message.user("hi")])]
    assert "".join(c.delta for c in chunks) == "one reply with several words"
    assert chunks[-1].finish_reason == "stop"


def test_a_model_may_not_define_a_sync_twin() -> None:
    with pytest.raises(TypeError, match="implements only the async"):

        class Twin(Model):  # pragma: no cover - the class statement itself fails
            def complete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
                return Completion()


def test_sync_calls_reuse_one_loop_per_thread() -> None:
    async def which() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    first, second = run_sync(which()), run_sync(which())
    assert first is second and not first.is_closed()  # pools opened by one call serve the next

    other: list[asyncio.AbstractEventLoop] = []
    thread = threading.Thread(target=lambda: other.append(run_sync(which())))
    thread.start()
    thread.join()
    assert other[0] is not first


def test_sync_streams_yield_each_chunk_before_the_next_is_made() -> None:
    made: list[int] = []

    async def slow() -> AsyncIterator[int]:
        for i in range(3):
            made.append(i)
            yield i

    seen = []
    for item in iter_sync(slow()):
        seen.append((item, list(made)))
    assert seen == [(0, [0]), (1, [0, 1]), (2, [0, 1, 2])]


def test_abandoning_a_sync_stream_closes_the_async_generator() -> None:
    closed = threading.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    stream = iter_sync(endless())
    assert next(stream) == 0
    stream.close()  # the caller walks away
    assert closed.is_set() and threading.active_count() == before


def test_context_set_inside_a_stream_survives_between_chunks() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="-")

    async def spans() -> AsyncIterator[str]:
        token = var.set("inside")
        try:
            yield var.get()
            yield var.get()
        finally:
            var.reset(token)  # raises if the steps ran in different contexts

    assert list(iter_sync(spans())) == ["inside", "inside"]


async def test_nested_sync_calls_from_the_background_loop_do_not_deadlock() -> None:
    async def inner() -> str:
        return "deep"

    async def outer() -> str:
        # Sync code running on the background loop calls the sync API again.
        return run_sync(inner())

    assert run_sync(outer()) == "deep"
