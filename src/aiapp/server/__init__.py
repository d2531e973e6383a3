"""``aiapp serve``: the gateway as an OpenAI-compatible HTTP service (Starlette on uvicorn).

>>> app = create_app(Gateway.from_config())            # an ASGI app; serve it with any ASGI server
>>> # or: aiapp serve --host 127.0.0.1 --port 8000 --workers 4

Endpoints: ``POST /v1/chat/completions`` (JSON and SSE streams, tools, ``response_format``),
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``, ``GET /ready``, ``GET /metrics``.
Errors use OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``); every response
carries ``X-Request-Id``, and calls carry ``X-Aiapp-Trace-Id``. Without a key store the server is
open (local use only); :mod:`aiapp.server._keys` provides virtual keys.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from aiapp.server._settings import ServerSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from aiapp.gateway import Gateway
    from aiapp.gateway.embedders import Embedder
    from aiapp.server._auth import KeyStoreLike

log = logging.getLogger("aiapp.server")

#: ``AIAPP_SERVER_AUTH``: ``keys`` (a key store is required), ``none`` (open), unset (keys when available).
AUTH_ENV = "AIAPP_SERVER_AUTH"


def create_app(
    gateway: Gateway | None = None,
    *,
    settings: ServerSettings | None = None,
    keys: KeyStoreLike | None = None,
    embedders: dict[str, Embedder] | None = None,
    close_gateway: bool = False,
) -> Starlette:
    """The OpenAI-compatible ASGI app over ``gateway`` (see :func:`aiapp.server._app.create_app`)."""
    from aiapp.server._app import create_app as _create

    return _create(gateway, settings=settings, keys=keys, embedders=embedders, close_gateway=close_gateway)


def app_from_env() -> Starlette:
    """The app uvicorn's workers build (``aiapp.server:app_from_env``, ``factory=True``).

    Reads the gateway config as :func:`aiapp.config.load_settings` does (``AIAPP_CONFIG``), the
    server's limits from ``AIAPP_SERVER_*`` and the auth mode from ``AIAPP_SERVER_AUTH``.
    """
    from aiapp.config import load_settings
    from aiapp.errors import ConfigError
    from aiapp.gateway import Gateway
    from aiapp.server._auth import load_key_store

    settings = load_settings()
    mode = os.environ.get(AUTH_ENV, "")
    keys = None if mode == "none" else load_key_store(settings)
    if keys is None and mode == "keys":
        raise ConfigError(
            "no key store is available (aiapp.server._keys); create keys with `aiapp keys create`, or "
            "serve open on a loopback host with --no-auth",
            field=AUTH_ENV,
        )
    if keys is None:
        log.warning("aiapp serve is running OPEN: no authentication (local use only)")
    return create_app(Gateway(settings), settings=ServerSettings.from_env(), keys=keys, close_gateway=True)


__all__ = ["ServerSettings", "app_from_env", "create_app"]
