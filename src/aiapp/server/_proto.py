"""uvicorn's httptools protocol with coalesced writes: one ``write`` per connection per loop step.

uvicorn writes a response's status line and headers, then its body, as separate
``transport.write`` calls, and a stream's every chunk as another. On a loopback or LAN socket each
write is a syscall and usually its own TCP segment, and each segment wakes the client: a plain
reply costs two wake-ups where one would do, and on a 2-core box the first one hands the CPU to the
client before the body is even written (``benchmarks/serve_vs_litellm.py`` measures the difference).

:class:`CoalescingTransport` keeps what is written during one step of the event loop and sends it
as one ``write`` at the start of the next step (``loop.call_soon``), or at once when the response
is complete, the buffer passes :data:`FLUSH_BYTES` or the connection is closed. Headers and body therefore leave together,
and stream chunks that are ready at the same moment share one write. A stream that must not wait
(its first chunk) ends its step (``await asyncio.sleep(0)``) after writing, which flushes it.

Used by ``aiapp serve`` (``http=HTTP_PROTOCOL``); any ASGI server works with the app, this only
saves syscalls and wake-ups.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: uvicorn's ``http=`` for this protocol (``uvicorn.run(..., http=HTTP_PROTOCOL)``).
HTTP_PROTOCOL = "aiapp.server._proto:CoalescingHttpToolsProtocol"
#: A buffer this large is written at once instead of at the end of the step.
FLUSH_BYTES = 64 * 1024


class CoalescingTransport:
    """Wraps an ``asyncio.Transport``: writes made in one loop step go out as one ``write``.

    Everything but ``write``/``writelines``/``close``/``write_eof``/``abort`` is the wrapped
    transport's own (flow control, ``get_extra_info``, ``is_closing`` ...).
    """

    __slots__ = ("_loop", "_pending", "_scheduled", "_size", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; it is written with everything else queued in this loop step."""
        if not data:
            return
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def writelines(self, lines: Any) -> None:
        """Queue each of ``lines``."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Write what is queued now (one syscall for all of it)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._size = 0
        if self.transport.is_closing():
            return
        self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()

    def close(self) -> None:
        """Flush, then close (the transport still sends its own buffer before closing)."""
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        """Flush, then half-close."""
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        """Drop what is queued and abort the connection."""
        self._pending = []
        self._size = 0
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wrap the connection's transport before uvicorn sees it."""
        self.coalescing = CoalescingTransport(transport, self.loop)
        wrapped: Any = self.coalescing
        super().connection_made(wrapped)

    def on_response_complete(self) -> None:
        """A finished response leaves now, not at the end of the step."""
        self.coalescing.flush()
        super().on_response_complete()
