"""``POST /v1/feedback``: users' feedback on served answers, stored with their traces.

Every chat reply carries its trace id in ``X-Aiapp-Trace-Id``; a client posts::

    {"trace_id": "8f3a...", "score": 1, "comment": "clear and correct", "user": "u42"}

``score`` is ``+1``/``-1`` (thumbs) or a rating in ``[0, 1]``. The request is authenticated with the
same virtual keys as the OpenAI endpoints; ``user`` defaults to the key's name. The feedback goes
through :func:`aiapp.tracing._feedback.record_feedback`, so it is stored under the same
content-capture policy as spans and exported as a ``user_feedback`` score. Errors are OpenAI-shaped:
400 for a bad body or score, 401/403 for keys, 404 (``trace_not_found``) for an unknown trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response

from aiapp.errors import AiappError, InputError
from aiapp.gateway import Gateway
from aiapp.server._auth import key_metadata
from aiapp.server._wire import WireError, parse_json, validate, wire_error
from aiapp.tracing._feedback import parse_feedback_score, record_feedback

_MAX_BODY = 64 * 1024


class FeedbackState(Protocol):
    """What the endpoint needs from the server's shared state."""

    @property
    def gateway(self) -> Gateway:
        """The served gateway (its tracer holds the trace store and exporters)."""
        ...

    async def authenticate(self, request: Request) -> Any:
        """The key record for the request (raises an OpenAI-shaped ``WireError``)."""
        ...


class FeedbackRequest(BaseModel):
    """The body of ``POST /v1/feedback``."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str = Field(min_length=1, max_length=128)
    score: float | str
    comment: str | None = Field(default=None, max_length=10_000)
    user: str | None = Field(default=None, max_length=256)


def _reply(
    body: dict[str, Any] | bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    data = body if isinstance(body, bytes) else to_json(body)
    return Response(data, status_code=status, headers=headers, media_type="application/json")


async def _read_small(request: Request) -> bytes:
    """The body, or a 413 as soon as it passes :data:`_MAX_BODY` (declared or streamed)."""
    too_large = WireError(413, f"feedback body is larger than {_MAX_BODY} bytes", code="request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _MAX_BODY:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_BODY:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def feedback_endpoint(state: FeedbackState) -> Callable[[Request], Awaitable[Response]]:
    """The ``POST /v1/feedback`` handler over the server's state."""

    async def endpoint(request: Request) -> Response:
        try:
            record = await state.authenticate(request)
            body = validate(FeedbackRequest, parse_json(await _read_small(request)))
            try:
                value = parse_feedback_score(body.score)
            except InputError as exc:
                raise WireError(400, str(exc), param="score", code="invalid_score") from exc
            tracer = state.gateway.tracer
            store = tracer.store
            if store is None:
                raise WireError(
                    503,
                    "tracing is disabled on this server, so feedback cannot be stored",
                    code="tracing_disabled",
                )
            full = await asyncio.to_thread(store.resolve, body.trace_id.strip())
            if full is None:
                raise WireError(
                    404, f"no trace with id {body.trace_id!r}", param="trace_id", code="trace_not_found"
                )
            user = body.user or key_metadata(record).get("key_name")
            stored = await asyncio.to_thread(
                record_feedback, tracer, full, value, comment=body.comment, user=user
            )
        except WireError as error:
            return _reply(error.body(), error.status, error.headers())
        except AiappError as exc:
            mapped = wire_error(exc)
            return _reply(mapped.body(), mapped.status, mapped.headers())
        return _reply(
            {
                "object": "feedback",
                "trace_id": stored.trace_id,
                "score": stored.score,
                "user": stored.user,
                "created": int(time.time()),
            }
        )

    return endpoint
