"""The Starlette app: OpenAI-compatible endpoints over one :class:`~aiapp.gateway.Gateway`.

Every chat or embeddings request runs inside a ``server`` trace span, so its trace id is known
before the first byte and goes out in ``X-Aiapp-Trace-Id`` — for streams and failed calls too; the
gateway's ``llm`` span nests under it. Each call races the client's ``http.disconnect``: a client
that goes away cancels the upstream call (and its stream) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiapp.errors import AiappError, ConfigError
from aiapp.gateway import Gateway
from aiapp.gateway._estimate import estimate_tokens
from aiapp.gateway.embedders import DEFAULT_EMBEDDER, Embedder, build_embedder
from aiapp.server._auth import AUTH_FAILURES, KeyStoreLike, auth_error, key_metadata
from aiapp.server._metrics import Metrics
from aiapp.server._settings import ServerSettings
from aiapp.server._wire import (
    ChatRequest,
    ChunkWriter,
    EmbeddingsRequest,
    WireError,
    completion_json,
    embeddings_json,
    error_event,
    parse_json,
    to_messages,
    to_options,
    validate,
    wire_error,
)
from aiapp.tracing import SpanRecord, new_id

log = logging.getLogger("aiapp.server")

_T = TypeVar("_T")
_JSON = "application/json"
_REQUEST_ID = "aiapp.request_id"


class ClientGone(Exception):
    """The client disconnected before its reply was finished."""


class _State:
    """What the endpoints share: the gateway, keys, embedders, metrics and settings."""

    def __init__(
        self,
        gateway: Gateway | None,
        settings: ServerSettings,
        keys: KeyStoreLike | None,
        embedders: dict[str, Embedder],
        close_gateway: bool,
    ) -> None:
        self._gateway = gateway
        self.settings = settings
        self.keys = keys
        self.embedders = dict(embedders)
        self.close_gateway = close_gateway
        self.metrics = Metrics()
        self._embedder_lock = asyncio.Lock()

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise WireError(503, "the gateway is not loaded yet", type="server_error", code="not_ready")
        return self._gateway

    def start(self) -> None:
        if self._gateway is None:
            self._gateway = Gateway.from_config()
            self.close_gateway = True

    async def stop(self) -> None:
        if self._gateway is not None and self.close_gateway:
            await self._gateway.aclose()
        close = getattr(self.keys, "aclose", None)
        if close is not None:
            await close()

    async def embedder(self, name: str) -> Embedder:
        found = self.embedders.get(name)
        if found is not None:
            return found
        retrieval = self.gateway.settings.retrieval
        if name not in (DEFAULT_EMBEDDER, retrieval.embedder):
            known = ", ".join(sorted({*self.embedders, DEFAULT_EMBEDDER, retrieval.embedder}))
            raise WireError(
                404,
                f"unknown embedding model {name!r} (known: {known})",
                param="model",
                code="model_not_found",
            )
        async with self._embedder_lock:
            if name not in self.embedders:
                configured = name == retrieval.embedder
                self.embedders[name] = await asyncio.to_thread(
                    build_embedder,
                    name,
                    api_base=retrieval.embedder_api_base if configured else None,
                    api_key_env=retrieval.embedder_api_key_env if configured else None,
                    runtime=retrieval.embedder_runtime,
                )
        return self.embedders[name]

    # -- keys --

    async def authenticate(self, request: Request) -> Any:
        if self.keys is None:
            return None
        try:
            return await self.keys.authenticate(request.headers.get("authorization"))
        except AUTH_FAILURES as exc:
            raise auth_error(exc) from exc

    def routes_for(self, record: Any) -> list[str]:
        routes = self.gateway.route_names()
        return routes if self.keys is None else self.keys.allowed_routes(record, routes)

    async def admit(self, record: Any, route: str, tokens: int) -> Any:
        if self.keys is None:
            return None
        try:
            return await self.keys.admit(record, route, tokens)
        except AUTH_FAILURES as exc:
            raise auth_error(exc) from exc

    async def settle(self, admission: Any, used: int | None) -> None:
        if self.keys is not None and admission is not None:
            try:
                await self.keys.settle(admission, used)
            except Exception:  # settling must not turn a served reply into an error
                log.exception("settling a key's usage failed")

    def check_model(self, route: str) -> None:
        """404 for a model that is neither a route nor a ``provider/model`` the gateway can build."""
        gateway = self.gateway
        if route in gateway.settings.routes:
            return
        try:
            gateway.model(route)
        except ConfigError as exc:
            raise WireError(404, str(exc), param="model", code="model_not_found") from exc


# -- plumbing -----------------------------------------------------------------------------------


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type=_JSON)


def _error(error: WireError, trace_id: str | None = None) -> Response:
    headers = error.headers()
    if trace_id:
        headers["x-aiapp-trace-id"] = trace_id
    return _json(error.body(), error.status, headers)


async def _read_body(request: Request, settings: ServerSettings) -> bytes:
    """The body, or a 413 once it passes ``max_body_bytes`` (the rest is drained so the client hears it)."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    chunks: list[bytes] = []
    size = 0
    over = declared.isdigit() and int(declared) > limit
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            over = True
        if over:
            if size > settings.max_drain_bytes:
                break
            continue
        chunks.append(chunk)
    if over:
        raise WireError(
            413, f"request body is larger than the server's limit of {limit} bytes", code="request_too_large"
        )
    return b"".join(chunks)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _race_disconnect(work: Awaitable[_T], receive: Receive) -> _T:
    """Await ``work``; if the client disconnects first, cancel it and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ClientGone
    return task.result()


class _Span:
    """The ``server`` span of one request (its ids are minted before any byte goes out)."""

    def __init__(self, state: _State, name: str, route: str, request_id: str) -> None:
        self.gateway = state.gateway
        self.record: SpanRecord | None = None
        self._cm: Any = None
        self.name = name
        self.route = route
        self.request_id = request_id

    def __enter__(self) -> SpanRecord:
        self._cm = self.gateway.tracer.span("server", self.name, route=self.route)
        self.record = self._cm.__enter__()
        self.record.attributes["request_id"] = self.request_id
        return self.record

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


def _unexpected(exc: Exception) -> WireError:
    """A WireError as it is; anything else logged and answered as a 500."""
    if isinstance(exc, WireError):
        return exc
    if not isinstance(exc, AiappError):
        log.exception("unexpected error serving a request")
    return wire_error(exc)


def _failed(record: SpanRecord, error: BaseException, status: int) -> None:
    record.status = "error"
    record.error = f"{type(error).__name__}: {error}"
    record.attributes["http_status"] = status


# -- endpoints ----------------------------------------------------------------------------------


class _Endpoints:
    def __init__(self, state: _State) -> None:
        self.state = state

    async def chat(self, request: Request) -> Response:
        state = self.state
        t0 = time.perf_counter()
        route = ""
        state.metrics.requests_in_flight(1)
        try:
            record = await state.authenticate(request)
            body = validate(ChatRequest, parse_json(await _read_body(request, state.settings)))
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
            if body.stream:
                return _ChatStream(state, request, body, messages, options, metadata, admission, t0)
            return await self._complete(request, route, messages, options, metadata, admission)
        except Exception as exc:
            error = _unexpected(exc)
            state.metrics.observe(
                "chat", route if error.status != 404 else "", error.status, time.perf_counter() - t0
            )
            return _error(error)
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
        request_id = request.scope.get(_REQUEST_ID, "")
        used: int | None = None
        with _Span(state, "POST /v1/chat/completions", route, request_id) as span:
            try:
                call = state.gateway.acomplete(
                    messages, model=route, options=options, metadata=metadata or None
                )
                async with asyncio.timeout(state.settings.request_timeout_s):
                    completion = await _race_disconnect(call, request.receive)
            except ClientGone as exc:
                state.metrics.disconnected()
                _failed(span, exc, 499)
                await state.settle(admission, None)
                state.metrics.observe("chat", route, 499, time.perf_counter() - t0)
                return Response(status_code=499)
            except (AiappError, TimeoutError) as exc:
                error = wire_error(exc)
                _failed(span, exc, error.status)
                await state.settle(admission, None)
                state.metrics.observe("chat", route, error.status, time.perf_counter() - t0)
                return _error(error, span.trace_id)
            used = completion.usage.total_tokens
            span.attributes["http_status"] = 200
        await state.settle(admission, used)
        state.metrics.usage(route, completion.usage, cache_hit=completion.cache_hit)
        state.metrics.observe("chat", route, 200, time.perf_counter() - t0)
        body = completion_json(completion, model=route, request_id=request_id)
        return _json(body, headers={"x-aiapp-trace-id": span.trace_id})

    async def embeddings(self, request: Request) -> Response:
        state = self.state
        t0 = time.perf_counter()
        route, status = "", 500
        trace_id: str | None = None
        try:
            record = await state.authenticate(request)
            body = validate(EmbeddingsRequest, parse_json(await _read_body(request, state.settings)))
            texts = [body.input] if isinstance(body.input, str) else list(body.input)
            embedder = await state.embedder(body.model)
            route = body.model
            tokens = sum(embedder.count_tokens(t) for t in texts)
            admission = await state.admit(record, route, tokens)
            with _Span(state, "POST /v1/embeddings", route, request.scope.get(_REQUEST_ID, "")) as span:
                trace_id = span.trace_id
                try:
                    async with asyncio.timeout(state.settings.request_timeout_s):
                        vectors = await _race_disconnect(
                            embedder.aembed(texts, kind="document"), request.receive
                        )
                except ClientGone as exc:
                    _failed(span, exc, 499)
                    state.metrics.disconnected()
                    await state.settle(admission, None)
                    status = 499
                    return Response(status_code=499)
                except (AiappError, TimeoutError) as exc:
                    error = wire_error(exc)
                    _failed(span, exc, error.status)
                    await state.settle(admission, None)
                    raise error from exc
                span.input_tokens = tokens
            await state.settle(admission, tokens)
            status = 200
            payload = embeddings_json(vectors, model=body.model, encoding=body.encoding_format, tokens=tokens)
            return _json(payload, headers={"x-aiapp-trace-id": trace_id})
        except Exception as exc:
            error = _unexpected(exc)
            status = error.status
            return _error(error, trace_id)
        finally:
            state.metrics.observe(
                "embeddings", route if status != 404 else "", status, time.perf_counter() - t0
            )

    async def models(self, request: Request) -> Response:
        try:
            record = await self.state.authenticate(request)
            routes = self.state.routes_for(record)
        except WireError as exc:
            return _error(exc)
        data = [{"id": r, "object": "model", "created": 0, "owned_by": "aiapp"} for r in routes]
        from pydantic_core import to_json

        return _json(to_json({"object": "list", "data": data}))

    async def health(self, request: Request) -> Response:
        return _json(b'{"status":"ok"}')

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
        from pydantic_core import to_json

        return _json(
            to_json({"status": "ready" if ok else "not ready", "checks": checks}), 200 if ok else 503
        )

    async def metrics(self, request: Request) -> Response:
        gateway = self.state._gateway
        text = self.state.metrics.render(gateway.health.snapshot() if gateway is not None else None)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


class _ChatStream(Response):
    """An SSE chat stream. Headers wait for the first chunk, so a call that fails before it gets
    a proper status; the stream races the client's disconnect and is cancelled when it goes."""

    def __init__(
        self,
        state: _State,
        request: Request,
        body: ChatRequest,
        messages: Any,
        options: Any,
        metadata: dict[str, Any],
        admission: Any,
        t0: float,
    ) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
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
        state = self.state
        route = self.body_req.model
        state.metrics.streams(1)
        try:
            await _race_disconnect(self._pump(scope, send), receive)
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
        used: int | None = None
        started = False
        with _Span(state, "POST /v1/chat/completions (stream)", route, scope.get(_REQUEST_ID, "")) as span:
            headers = {"x-aiapp-trace-id": span.trace_id}
            chunks = state.gateway.astream(
                self.messages, model=route, options=self.options, metadata=self.metadata or None
            )
            try:
                async with asyncio.timeout(state.settings.request_timeout_s):
                    async for chunk in chunks:
                        if not started:
                            started = True
                            await _start(
                                send, 200, "text/event-stream", {**headers, "cache-control": "no-cache"}
                            )
                        await send(
                            {"type": "http.response.body", "body": writer.chunk(chunk), "more_body": True}
                        )
                    if not started:
                        started = True
                        await _start(send, 200, "text/event-stream", {**headers, "cache-control": "no-cache"})
                    await send({"type": "http.response.body", "body": writer.end(), "more_body": False})
                last = writer.usage.usage if writer.usage is not None else None
                used = last.total_tokens if last is not None else None
                state.metrics.usage(route, last)
                span.attributes["http_status"] = 200
            except asyncio.CancelledError as exc:
                span.attributes.update(http_status=499, cancelled=True)  # the span records the CancelledError
                await _shielded(state.settle(self.admission, None))
                raise exc
            except (AiappError, TimeoutError) as exc:
                error = wire_error(exc)
                _failed(span, exc, error.status)
                if started:
                    await send({"type": "http.response.body", "body": error_event(error), "more_body": False})
                else:
                    self.sent_status = error.status
                    await _start(send, error.status, _JSON, {**headers, **error.headers()})
                    await send({"type": "http.response.body", "body": error.body(), "more_body": False})
            finally:
                await _shielded(_aclose(chunks))
        await state.settle(self.admission, used)


async def _aclose(chunks: AsyncIterator[Any]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def _shielded(work: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.shield(work)


async def _start(send: Send, status: int, media_type: str, headers: dict[str, str]) -> None:
    raw = [(b"content-type", media_type.encode())]
    raw += [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})


class _RequestId:
    """ASGI middleware: ``X-Request-Id`` on every response (the client's, if sane, or a new one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = given.decode("latin-1") if _sane(given) else new_id()
        scope[_REQUEST_ID] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _sane(value: bytes) -> bool:
    return 0 < len(value) <= 128 and all(c in b"-_.:" or chr(c).isalnum() for c in value) and value.isascii()


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
    state = _State(gateway, settings or ServerSettings.from_env(), keys, embedders or {}, close_gateway)
    endpoints = _Endpoints(state)
    routes: Sequence[Route] = [
        Route("/v1/chat/completions", endpoints.chat, methods=["POST"]),
        Route("/v1/embeddings", endpoints.embeddings, methods=["POST"]),
        Route("/v1/models", endpoints.models, methods=["GET"]),
        Route("/health", endpoints.health, methods=["GET"]),
        Route("/ready", endpoints.ready, methods=["GET"]),
        Route("/metrics", endpoints.metrics, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await state.stop()

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(WireError(404, f"no endpoint {request.method} {request.url.path}", code="not_found"))

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(WireError(405, f"method {request.method} is not allowed on {request.url.path}"))

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found,
        405: not_allowed,
    }
    app = Starlette(routes=list(routes), lifespan=lifespan, exception_handlers=handlers)
    app.state.aiapp = state
    app.add_middleware(_RequestId)
    return app
