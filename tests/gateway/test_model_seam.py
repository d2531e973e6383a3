"""The Model base class derives sync from async and async from sync, so providers implement one side."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence

from aiapp.gateway import Model, collect
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


class SyncOnly(Model):
    name = "sync-only"

    def complete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        return Completion(text="sync reply with several words")


def test_sync_calls_on_an_async_only_model() -> None:
    model = AsyncOnly()
    assert model.complete([Message.user("hi")]).text == "async says hi"
    assert collect(model.stream([Message.user("hi")])).text.startswith("w0 w1 ")


async def test_sync_call_from_inside_a_running_loop() -> None:
    assert AsyncOnly().complete([Message.user("nested")]).text == "async says nested"


async def test_async_calls_on_a_sync_only_model() -> None:
    model = SyncOnly()
    assert (await model.acomplete([Message.user("hi")])).text == "sync reply with several words"
    chunks = [c async for c in model.astream([Message.user("hi")])]
    assert "".join(c.delta for c in chunks) == "sync reply with several words"
    assert chunks[-1].finish_reason == "stop"


def test_abandoning_a_bridged_stream_does_not_leak_its_thread() -> None:
    before = threading.active_count()
    stream = AsyncOnly().stream([Message.user("hi")])
    assert next(stream).delta == "w0 "
    stream.close()  # the caller walks away after one chunk of 200
    assert threading.active_count() == before
