"""What the endpoints share (:class:`State`) and the plumbing every request goes through.

Bodies are read against a size limit, each call races the client's ``http.disconnect`` (a client
that goes away cancels the upstream call at once), and every chat or embeddings request runs in a
``server`` trace span whose ids exist before the first byte goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from aiapp.errors import AiappError, ConfigError
from aiapp.gateway import Gateway
from aiapp.gateway.embedders import DEFAULT_EMBEDDER, Embedder, build_embedder
from aiapp.server._auth import AUTH_FAILURES, KeyStoreLike, auth_error
from aiapp.server._metrics import Metrics
from aiapp.server._settings import ServerSettings
from aiapp.server._wire import WireError, wire_error
from aiapp.tracing import SpanRecord

log = logging.getLogger("aiapp.server")

_T = TypeVar("_T")
JSON_TYPE = "application/json"
#: The scope key holding the request's id (set before any endpoint runs).
REQUEST_ID = "aiapp.request_id"


class ClientGone(Exception):
    """The client disconnected before its reply was finished."""


class State:
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
        self.pid = os.getpid()  # recorded on every server span: which worker served
        self._embedder_lock = asyncio.Lock()

    @property
    def gateway(self) -> Gateway:
        """The served gateway (503 until it is loaded)."""
        if self._gateway is None:
            raise WireError(503, "the gateway is not loaded yet", type="server_error", code="not_ready")
        return self._gateway

    def start(self) -> None:
        """Load the gateway from the config when none was given (at start-up)."""
        if self._gateway is None:
            self._gateway = Gateway.from_config()
            self.close_gateway = True

    async def stop(self) -> None:
        """Close the gateway (when owned) and the key store (at shutdown)."""
        if self._gateway is not None and self.close_gateway:
            await self._gateway.aclose()
        close = getattr(self.keys, "aclose", None)
        if close is not None:
            await close()

    async def embedder(self, name: str) -> Embedder:
        """The embedder serving ``name`` (built on first use; 404 for an unknown one)."""
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
        """The key record for the request (``None`` on an open server); 401 or 503 otherwise."""
        if self.keys is None:
            return None
        try:
            return await self.keys.authenticate(request.headers.get("authorization"))
        except AUTH_FAILURES as exc:
            raise auth_error(exc) from exc

    def routes_for(self, record: Any) -> list[str]:
        """The routes ``record`` may call."""
        routes = self.gateway.route_names()
        return routes if self.keys is None else self.keys.allowed_routes(record, routes)

    async def admit(self, record: Any, route: str, tokens: int) -> Any:
        """Count one call against the key's limits (403/429 when refused)."""
        if self.keys is None:
            return None
        try:
            return await self.keys.admit(record, route, tokens)
        except AUTH_FAILURES as exc:
            raise auth_error(exc) from exc

    async def settle(self, admission: Any, used: int | None) -> None:
        """Settle an admitted call with the tokens it used; never raises."""
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


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response from ready-encoded bytes."""
    return Response(body, status_code=status, headers=headers, media_type=JSON_TYPE)


def error_response(error: WireError, trace_id: str | None = None) -> Response:
    """``error`` in OpenAI's shape, with ``Retry-After`` and the trace id when there are any."""
    headers = error.headers()
    if trace_id:
        headers["x-aiapp-trace-id"] = trace_id
    return json_response(error.body(), error.status, headers)


async def read_body(request: Request, settings: ServerSettings) -> bytes:
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


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has gone (``http.disconnect``)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def race_disconnect(work: Awaitable[_T], receive: Receive) -> _T:
    """Await ``work``; if the client disconnects first, cancel it and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect(receive))
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


class ServerSpan:
    """The ``server`` span of one request (its ids are minted before any byte goes out)."""

    def __init__(self, state: State, name: str, route: str, request_id: str) -> None:
        self.gateway = state.gateway
        self.pid = state.pid
        self.record: SpanRecord | None = None
        self._cm: Any = None
        self.name = name
        self.route = route
        self.request_id = request_id

    def __enter__(self) -> SpanRecord:
        self._cm = self.gateway.tracer.span("server", self.name, route=self.route)
        self.record = self._cm.__enter__()
        self.record.attributes["request_id"] = self.request_id
        self.record.attributes["worker_pid"] = self.pid
        return self.record

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


def unexpected(exc: Exception) -> WireError:
    """A WireError as it is; anything else logged and answered as a 500."""
    if isinstance(exc, WireError):
        return exc
    if not isinstance(exc, AiappError):
        log.exception("unexpected error serving a request")
    return wire_error(exc)


def failed(record: SpanRecord, error: BaseException, status: int) -> None:
    """Mark a ``server`` span failed with ``error`` and the HTTP status answered."""
    record.status = "error"
    record.error = f"{type(error).__name__}: {error}"
    record.attributes["http_status"] = status
