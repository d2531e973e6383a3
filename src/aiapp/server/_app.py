"""The Starlette app: OpenAI-compatible endpoints over one :class:`~aiapp.gateway.Gateway`.

Every chat or embeddings request runs inside a ``server`` trace span, so its trace id is known
before the first byte and goes out in ``X-Aiapp-Trace-Id`` — for streams and failed calls too; the
gateway's ``llm`` span nests under it. Each call races the client's ``http.disconnect``: a client
that goes away cancels the upstream call (and its stream) at once.

The two hot endpoints (``POST /v1/chat/completions`` and ``POST /v1/embeddings``) are dispatched
by :class:`ServerApp` straight from the ASGI scope; everything else goes through Starlette's
router and middleware. The endpoints catch their own errors, so the fast path gives up nothing
but the middleware's per-request and per-chunk cost (``benchmarks/serve_vs_litellm.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiapp.errors import AiappError
from aiapp.gateway import Gateway
from aiapp.gateway._estimate import estimate_tokens
from aiapp.gateway._redis import async_client, redis_errors, safe_url
from aiapp.gateway.embedders import Embedder
from aiapp.server._auth import KeyStoreLike, key_metadata
from aiapp.server._feedback import feedback_endpoint
from aiapp.server._settings import ServerSettings
from aiapp.server._state import (
    REQUEST_ID,
    ClientGone,
    ServerSpan,
    State,
    error_response,
    failed,
    json_response,
    race_disconnect,
    read_body,
    unexpected,
)
from aiapp.server._stream import ChatStream
from aiapp.server._wire import (
    ChatRequest,
    EmbeddingsRequest,
    WireError,
    completion_json,
    embeddings_json,
    parse_json,
    to_messages,
    to_options,
    validate,
    wire_error,
)
from aiapp.tracing import new_id

log = logging.getLogger("aiapp.server")

# -- endpoints ----------------------------------------------------------------------------------


class _Endpoints:
    def __init__(self, state: State) -> None:
        self.state = state

    async def chat(self, request: Request) -> Response:
        state = self.state
        t0 = time.perf_counter()
        route = ""
        state.metrics.requests_in_flight(1)
        try:
            record = await state.authenticate(request)
            body = validate(ChatRequest, parse_json(await read_body(request, state.settings)))
            messages, options = to_messages(body), to_options(body)
            route = body.model
            state.check_model(route)
            if state.keys is not None and route not in state.routes_for(record):
                raise WireError(
                    403,
                    f"this key may not use model {route!r}",
                    type="permission_error",
                    param="model",
                    code="route_not_allowed",
                )
            admission = await state.admit(record, route, estimate_tokens(messages, options).total)
            metadata = key_metadata(record)
            user = (body.model_extra or {}).get("user")  # OpenAI's end-user id: sticky splits, shadows
            if isinstance(user, str) and user:
                metadata = {**metadata, "user": user}
            if body.stream:
                return ChatStream(state, request, body, messages, options, metadata, admission, t0)
            return await self._complete(request, route, messages, options, metadata, admission)
        except Exception as exc:
            error = unexpected(exc)
            state.metrics.observe(
                "chat", route if error.status != 404 else "", error.status, time.perf_counter() - t0
            )
            return error_response(error)
        finally:
            state.metrics.requests_in_flight(-1)

    async def _complete(
        self,
        request: Request,
        route: str,
        messages: Any,
        options: Any,
        metadata: dict[str, Any],
        admission: Any,
    ) -> Response:
        state = self.state
        t0 = time.perf_counter()
        request_id = request.scope.get(REQUEST_ID, "")
        used: int | None = None
        with ServerSpan(state, "POST /v1/chat/completions", route, request_id) as span:
            try:
                call = state.gateway.acomplete(
                    messages, model=route, options=options, metadata=metadata or None
                )
                async with asyncio.timeout(state.settings.request_timeout_s):
                    completion = await race_disconnect(call, request.receive)
            except ClientGone as exc:
                state.metrics.disconnected()
                failed(span, exc, 499)
                await state.settle(admission, None)
                state.metrics.observe("chat", route, 499, time.perf_counter() - t0)
                return Response(status_code=499)
            except (AiappError, TimeoutError) as exc:
                error = wire_error(exc)
                failed(span, exc, error.status)
                await state.settle(admission, None)
                state.metrics.observe("chat", route, error.status, time.perf_counter() - t0)
                return error_response(error, span.trace_id)
            used = completion.usage.total_tokens
            span.attributes["http_status"] = 200
        await state.settle(admission, used)
        state.metrics.usage(route, completion.usage, cache_hit=completion.cache_hit)
        state.metrics.observe("chat", route, 200, time.perf_counter() - t0)
        body = completion_json(completion, model=route, request_id=request_id)
        return json_response(body, headers={"x-aiapp-trace-id": span.trace_id})

    async def embeddings(self, request: Request) -> Response:
        state = self.state
        t0 = time.perf_counter()
        route, status = "", 500
        trace_id: str | None = None
        try:
            record = await state.authenticate(request)
            body = validate(EmbeddingsRequest, parse_json(await read_body(request, state.settings)))
            texts = [body.input] if isinstance(body.input, str) else list(body.input)
            embedder = await state.embedder(body.model)
            route = body.model
            tokens = sum(embedder.count_tokens(t) for t in texts)
            admission = await state.admit(record, route, tokens)
            with ServerSpan(state, "POST /v1/embeddings", route, request.scope.get(REQUEST_ID, "")) as span:
                trace_id = span.trace_id
                try:
                    async with asyncio.timeout(state.settings.request_timeout_s):
                        vectors = await race_disconnect(
                            embedder.aembed(texts, kind="document"), request.receive
                        )
                except ClientGone as exc:
                    failed(span, exc, 499)
                    state.metrics.disconnected()
                    await state.settle(admission, None)
                    status = 499
                    return Response(status_code=499)
                except (AiappError, TimeoutError) as exc:
                    error = wire_error(exc)
                    failed(span, exc, error.status)
                    await state.settle(admission, None)
                    raise error from exc
                span.input_tokens = tokens
            await state.settle(admission, tokens)
            status = 200
            payload = embeddings_json(vectors, model=body.model, encoding=body.encoding_format, tokens=tokens)
            return json_response(payload, headers={"x-aiapp-trace-id": trace_id})
        except Exception as exc:
            error = unexpected(exc)
            status = error.status
            return error_response(error, trace_id)
        finally:
            state.metrics.observe(
                "embeddings", route if status != 404 else "", status, time.perf_counter() - t0
            )

    async def models(self, request: Request) -> Response:
        try:
            record = await self.state.authenticate(request)
            routes = self.state.routes_for(record)
        except WireError as exc:
            return error_response(exc)
        data = [{"id": r, "object": "model", "created": 0, "owned_by": "aiapp"} for r in routes]
        from pydantic_core import to_json

        return json_response(to_json({"object": "list", "data": data}))

    async def health(self, request: Request) -> Response:
        return json_response(b'{"status":"ok"}')

    async def ready(self, request: Request) -> Response:
        checks: dict[str, str] = {}
        ok = True
        try:
            self.state.gateway  # noqa: B018 - raises until the config is loaded
            checks["config"] = "ok"
        except WireError as exc:
            checks["config"], ok = exc.message, False
        ping = getattr(self.state.keys, "ping", None)
        if ping is None:
            checks["keys"] = "not configured (open server)"
        else:
            try:
                answered = await asyncio.wait_for(ping(), timeout=2.0)
                checks["keys"] = (
                    "ok" if answered is not False else "key storage (Redis or SQLite) did not answer"
                )
                ok = ok and answered is not False
            except Exception as exc:
                checks["keys"], ok = f"{type(exc).__name__}: {exc}", False
        gateway = self.state._gateway
        url = gateway.settings.redis_url if gateway is not None else None
        if url:
            checks["redis"] = await _ping_redis(url)
            ok = ok and checks["redis"] == "ok"
        from pydantic_core import to_json

        return json_response(
            to_json({"status": "ready" if ok else "not ready", "checks": checks}), 200 if ok else 503
        )

    async def metrics(self, request: Request) -> Response:
        gateway = self.state._gateway
        text = self.state.metrics.render(gateway.health.snapshot() if gateway is not None else None)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


class _RequestId:
    """ASGI middleware: ``X-Request-Id`` on every response (the client's, if sane, or a new one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope[REQUEST_ID] = _request_id(scope)
        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if not any(k == b"x-request-id" for k, _ in headers):  # a stream sets its own
                    message = {**message, "headers": [*headers, header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _sane(value: bytes) -> bool:
    return 0 < len(value) <= 128 and all(c in b"-_.:" or chr(c).isalnum() for c in value) and value.isascii()


def _request_id(scope: Scope) -> str:
    given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
    return given.decode("latin-1") if _sane(given) else new_id()


async def _ping_redis(url: str) -> str:
    """``ok``, or why the Redis behind keys, limits, budgets and the cache does not answer."""
    try:
        client = async_client(url, timeout_s=1.0)
    except AiappError as exc:
        return str(exc)
    down: tuple[type[BaseException], ...] = (TimeoutError, *redis_errors())
    try:
        await asyncio.wait_for(client.ping(), timeout=2.0)
        return "ok"
    except down as exc:
        return f"Redis is down: cannot reach {safe_url(url)} ({type(exc).__name__}: {exc})"
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


Endpoint = Callable[[Request], Awaitable[Response]]


class ServerApp(Starlette):
    """Starlette, with the hot endpoints dispatched before its router and middleware.

    ``POST`` to a path in :attr:`fast` runs that endpoint directly (it answers its own errors);
    any other request, and lifespan, goes through Starlette as usual.
    """

    fast: dict[str, Endpoint]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.fast.get(scope["path"])
            if endpoint is not None:
                await self._fast(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _fast(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        request_id = scope[REQUEST_ID] = _request_id(scope)
        try:
            response = await endpoint(Request(scope, receive))
        except Exception as exc:  # the endpoints answer their own errors; this is a last resort
            response = error_response(unexpected(exc))
        if not isinstance(response, ChatStream):
            response.raw_headers.append((b"x-request-id", request_id.encode("latin-1")))
        await response(scope, receive, send)


def create_app(
    gateway: Gateway | None = None,
    *,
    settings: ServerSettings | None = None,
    keys: KeyStoreLike | None = None,
    embedders: dict[str, Embedder] | None = None,
    close_gateway: bool = False,
) -> Starlette:
    """The OpenAI-compatible ASGI app over ``gateway``.

    Args:
        gateway: The gateway to serve; ``None`` builds one from the config at start-up (and closes it
            at shutdown).
        settings: Body limit and timeout; default :meth:`ServerSettings.from_env`.
        keys: The virtual-key store (:mod:`aiapp.server._keys`). ``None`` serves **open**, with no
            authentication, budgets per key or limits per key: for local use only (``aiapp serve``
            refuses to run open on a non-loopback host unless ``--no-auth`` is given).
        embedders: Extra embedding models by request name, besides ``local/all-MiniLM-L6-v2`` and
            the configured ``retrieval.embedder``.
        close_gateway: Close a given ``gateway`` at shutdown too.
    """
    state = State(gateway, settings or ServerSettings.from_env(), keys, embedders or {}, close_gateway)
    endpoints = _Endpoints(state)
    routes: Sequence[Route] = [
        Route("/v1/chat/completions", endpoints.chat, methods=["POST"]),
        Route("/v1/embeddings", endpoints.embeddings, methods=["POST"]),
        Route("/v1/models", endpoints.models, methods=["GET"]),
        Route("/health", endpoints.health, methods=["GET"]),
        Route("/ready", endpoints.ready, methods=["GET"]),
        Route("/metrics", endpoints.metrics, methods=["GET"]),
        Route("/v1/feedback", feedback_endpoint(state), methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await state.stop()

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(
            WireError(404, f"no endpoint {request.method} {request.url.path}", code="not_found")
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(WireError(405, f"method {request.method} is not allowed on {request.url.path}"))

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found,
        405: not_allowed,
    }
    app = ServerApp(routes=list(routes), lifespan=lifespan, exception_handlers=handlers)
    app.fast = {"/v1/chat/completions": endpoints.chat, "/v1/embeddings": endpoints.embeddings}
    app.state.aiapp = state
    app.add_middleware(_RequestId)
    return app
