"""SSE chat streams: ``chat.completion.chunk`` events over the gateway's ``astream``.

Headers wait for the first chunk, so a call that fails before it gets a proper status. The first
chunk is written and flushed at once (the pump ends its loop step right after it, which sends the
coalesced write of :mod:`aiapp.server._proto`); later chunks that are ready at the same moment
leave in one write. The stream races the client's disconnect and is cancelled when it goes; a
server shutting down lets it finish (uvicorn waits for in-flight requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aiapp.errors import AiappError
from aiapp.server._state import (
    JSON_TYPE,
    REQUEST_ID,
    ClientGone,
    ServerSpan,
    State,
    failed,
    race_disconnect,
)
from aiapp.server._wire import ChatRequest, ChunkWriter, error_event, wire_error
from aiapp.tracing import new_id

_SSE = "text/event-stream"


class ChatStream(Response):
    """One streamed chat reply (an ASGI response; see the module docstring)."""

    def __init__(
        self,
        state: State,
        request: Request,
        body: ChatRequest,
        messages: Any,
        options: Any,
        metadata: dict[str, Any],
        admission: Any,
        t0: float,
    ) -> None:
        super().__init__(status_code=200, media_type=_SSE)
        self.state = state
        self.request = request
        self.body_req = body
        self.messages = messages
        self.options = options
        self.metadata = metadata
        self.admission = admission
        self.t0 = t0
        self.sent_status = 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the reply to ``send``; a disconnect cancels the upstream call."""
        state = self.state
        route = self.body_req.model
        state.metrics.streams(1)
        try:
            await race_disconnect(self._pump(scope, send), receive)
        except ClientGone:
            state.metrics.disconnected()
            self.sent_status = 499
        finally:
            state.metrics.streams(-1)
            state.metrics.observe("chat", route, self.sent_status, time.perf_counter() - self.t0)

    async def _pump(self, scope: Scope, send: Send) -> None:
        state = self.state
        route = self.body_req.model
        writer = ChunkWriter(model=route, stream_id=new_id(), include_usage=self.body_req.include_usage)
        request_id = scope.get(REQUEST_ID, "")
        used: int | None = None
        started = False
        with ServerSpan(state, "POST /v1/chat/completions (stream)", route, request_id) as span:
            headers = {"x-aiapp-trace-id": span.trace_id}
            if request_id:
                headers["x-request-id"] = request_id
            chunks = state.gateway.astream(
                self.messages, model=route, options=self.options, metadata=self.metadata or None
            )
            try:
                async with asyncio.timeout(state.settings.request_timeout_s):
                    async for chunk in chunks:
                        body = writer.chunk(chunk)
                        if started:
                            await send({"type": "http.response.body", "body": body, "more_body": True})
                            continue
                        started = True
                        await start_response(send, 200, _SSE, {**headers, "cache-control": "no-cache"})
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                        await asyncio.sleep(0)  # end this step: the first chunk goes out now
                    if not started:
                        started = True
                        await start_response(send, 200, _SSE, {**headers, "cache-control": "no-cache"})
                    await send({"type": "http.response.body", "body": writer.end(), "more_body": False})
                last = writer.usage.usage if writer.usage is not None else None
                used = last.total_tokens if last is not None else None
                state.metrics.usage(route, last)
                span.attributes["http_status"] = 200
            except asyncio.CancelledError as exc:
                span.attributes.update(http_status=499, cancelled=True)  # the span records the CancelledError
                await shielded(state.settle(self.admission, None))
                raise exc
            except (AiappError, TimeoutError) as exc:
                error = wire_error(exc)
                failed(span, exc, error.status)
                if started:
                    await send({"type": "http.response.body", "body": error_event(error), "more_body": False})
                else:
                    self.sent_status = error.status
                    await start_response(send, error.status, JSON_TYPE, {**headers, **error.headers()})
                    await send({"type": "http.response.body", "body": error.body(), "more_body": False})
            finally:
                await shielded(aclose(chunks))
        await state.settle(self.admission, used)


async def aclose(chunks: AsyncIterator[Any]) -> None:
    """Close an async iterator that has ``aclose`` (an abandoned stream's upstream call ends)."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def shielded(work: Awaitable[Any]) -> None:
    """Run ``work`` to the end even if the caller is cancelled; never raises."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.shield(work)


async def start_response(send: Send, status: int, media_type: str, headers: dict[str, str]) -> None:
    """Send ``http.response.start`` with ``headers`` (lower-cased names)."""
    raw = [(b"content-type", media_type.encode())]
    raw += [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
