"""The console's Starlette app: routes, the access token, and the context every page reads.

Pages are rendered on the server (:mod:`aiapp.ui._render`); the only scripts are a few lines on the
review page (keyboard grading) written inline. Ratings are the one write: ``POST`` requests must
carry the ``X-Aiapp-UI`` header, which a cross-site form cannot send, and the token when one is set.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from aiapp.config import Settings, load_settings
from aiapp.errors import AiappError, ConfigError, InputError
from aiapp.gateway import is_loopback
from aiapp.ui import _pages
from aiapp.ui._evals import EvalStore
from aiapp.ui._render import Renderer
from aiapp.ui._traces import TraceReader

#: ``AIAPP_UI_TOKEN``: the access token (required when the console binds beyond loopback).
TOKEN_ENV = "AIAPP_UI_TOKEN"
_COOKIE = "aiapp_ui_token"


@dataclass
class UiContext:
    """What the pages read: settings, the trace store, eval runs, the repository root.

    Attributes:
        settings: The loaded settings (``home``, ``prompts.dir``).
        root: The repository root: ``review/`` and relative ``prompts.dir`` resolve against it.
        traces: Reader of ``$AIAPP_HOME/traces.db``.
        evals: Reader of ``$AIAPP_HOME/evals``.
        renderer: The page templates.
    """

    settings: Settings
    root: Path
    traces: TraceReader
    evals: EvalStore
    renderer: Renderer

    @property
    def prompts_dir(self) -> Path:
        """The prompts directory."""
        directory = Path(self.settings.prompts.dir)
        return directory if directory.is_absolute() else self.root / directory


def check_binding(host: str, token: str | None) -> None:
    """Refuse to bind beyond loopback without a token.

    Raises:
        ConfigError: a non-loopback ``host`` and no token.
    """
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to serve the console on {host} without a token: pass --token or set {TOKEN_ENV}",
            field="--host",
        )


class _TokenGate(BaseHTTPMiddleware):
    """Every request needs the token (query ``?token=``, which sets a cookie, a cookie, or a bearer header)."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path == "/health":
            return await call_next(request)
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        candidates = [
            given,
            request.cookies.get(_COOKIE),
            header[7:] if header.lower().startswith("bearer ") else None,
        ]
        if not any(c and hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates):
            return PlainTextResponse("forbidden: this console needs its token (?token=...)", status_code=403)
        if given:  # set the cookie and drop the token from the address bar
            target = request.url.remove_query_params("token")
            response: Response = RedirectResponse(str(target), status_code=303)
            response.set_cookie(_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        return await call_next(request)


def create_app(
    *,
    settings: Settings | None = None,
    root: Path | str | None = None,
    token: str | None = None,
) -> Starlette:
    """The console as an ASGI app.

    Args:
        settings: Settings (default: loaded from the config file and ``AIAPP_*``).
        root: The repository root (default: the working directory).
        token: Access token; every request must present it when set.
    """
    settings = settings or load_settings()
    ctx = UiContext(
        settings=settings,
        root=Path(root) if root is not None else Path.cwd(),
        traces=TraceReader(settings.traces_path),
        evals=EvalStore(settings.home),
        renderer=Renderer(),
    )

    def page(handler: Callable[[UiContext, Request], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return handler(ctx, request)
            except InputError as exc:
                return _error(ctx, request, 404, str(exc))
            except AiappError as exc:
                return _error(ctx, request, 400, str(exc))

        return endpoint

    async def rate(request: Request) -> Response:
        if request.headers.get("x-aiapp-ui") != "1":
            return JSONResponse({"error": "missing X-Aiapp-UI header"}, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        try:
            return JSONResponse(_pages.rate(ctx, request.path_params["queue"], body))
        except AiappError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def create_queue(request: Request) -> Response:
        if request.headers.get("x-aiapp-ui") != "1":
            return JSONResponse({"error": "missing X-Aiapp-UI header"}, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        try:
            return JSONResponse(_pages.create_queue_from(ctx, body))
        except AiappError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/", page(_pages.dashboard)),
        Route("/health", health),
        Route("/traces", page(_pages.traces)),
        Route("/traces/{trace_id}", page(_pages.trace)),
        Route("/evals", page(_pages.evals_index)),
        Route("/evals/{suite}/compare", page(_pages.evals_compare)),
        Route("/evals/{suite}/{run}", page(_pages.eval_run)),
        Route("/review", page(_pages.review_index)),
        Route("/review/{queue}", page(_pages.review_queue)),
        Route("/review/{queue}/agreement", page(_pages.review_agreement)),
        Route("/api/review/{queue}/rate", rate, methods=["POST"]),
        Route("/api/review", create_queue, methods=["POST"]),
        Route("/prompts", page(_pages.prompts_index)),
        Route("/prompts/{name}", page(_pages.prompt)),
        Route("/prompts/{name}/diff", page(_pages.prompt_diff)),
    ]
    token = token or os.environ.get(TOKEN_ENV) or None
    middleware = [Middleware(_TokenGate, token=token)] if token else []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        ctx.traces.close()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.ui = ctx
    return app


def _error(ctx: UiContext, request: Request, status: int, message: str) -> Response:
    html = ctx.renderer.page("error.html", request, title="Error", message=message, status=status)
    return HTMLResponse(html, status_code=status)
