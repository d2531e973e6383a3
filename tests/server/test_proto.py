"""Coalesced writes under uvicorn's httptools protocol: one write per response, stream chunks batched."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from aiapp.server._proto import FLUSH_BYTES, CoalescingHttpToolsProtocol, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """Keeps every write (one per syscall a socket transport would make)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_writes_in_one_step_leave_as_one() -> None:
    raw = RecordingTransport()
    coalescing = CoalescingTransport(raw, asyncio.get_running_loop())
    coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
    coalescing.write(b"body")
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    coalescing.write(b"x" * FLUSH_BYTES)  # a big buffer goes at once
    assert raw.writes[-1] == b"x" * FLUSH_BYTES
    coalescing.write(b"last")
    coalescing.close()  # nothing queued is lost on close
    assert raw.writes[-1] == b"last" and raw.closed


def _serve(app: Any, request: bytes) -> tuple[RecordingTransport, CoalescingHttpToolsProtocol]:
    config = uvicorn.Config(app, lifespan="off", log_level="warning")
    config.load()
    raw = RecordingTransport()
    protocol = CoalescingHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    protocol.connection_made(raw)
    protocol.data_received(request)
    return raw, protocol


async def _until(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the response did not finish")


async def test_a_plain_response_is_one_write() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    raw, protocol = _serve(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await _until(lambda: protocol.cycle is not None and protocol.cycle.response_complete)
    assert len(raw.writes) == 1
    assert raw.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and raw.writes[0].endswith(b"\r\n\r\nok")


async def test_a_stream_flushes_its_first_chunk_and_batches_the_rest() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0)  # what aiapp's stream does after its first chunk
        for part in (b"a", b"b", b"c"):  # ready together
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    raw, protocol = _serve(app, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await _until(lambda: protocol.cycle is not None and protocol.cycle.response_complete)
    assert len(raw.writes) == 2
    assert raw.writes[0].startswith(b"HTTP/1.1 200 OK") and raw.writes[0].endswith(b"5\r\nfirst\r\n")
    assert raw.writes[1] == b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n"
