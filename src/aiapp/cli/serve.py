"""``aiapp serve``: run the gateway as an OpenAI-compatible HTTP service on uvicorn."""

from __future__ import annotations

import os
import signal
from types import FrameType

import typer

from aiapp.cli._common import ConfigOption


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
        port: int = typer.Option(8000, "--port", help="Port to listen on."),
        workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (uvicorn multi-process)."),
        config: str | None = ConfigOption,
        no_auth: bool = typer.Option(
            False, "--no-auth", help="Serve without keys: anyone who can reach the port may call every route."
        ),
        max_body_bytes: int | None = typer.Option(
            None, "--max-body-bytes", help="Request body limit (default 1 MB)."
        ),
        timeout_s: float | None = typer.Option(
            None, "--timeout", help="Per-request timeout in seconds (default 600)."
        ),
        graceful_s: int = typer.Option(
            30, "--graceful-timeout", help="Seconds a shutdown waits for in-flight requests and streams."
        ),
    ) -> None:
        """Serve the gateway over HTTP with the OpenAI API (/v1/chat/completions, /v1/embeddings ...).

        Every request needs a virtual key (`aiapp keys create`). Without a key store the server runs
        open, which it does only on a loopback host unless --no-auth is given.
        """
        import uvicorn

        from aiapp.config import load_settings
        from aiapp.errors import ConfigError
        from aiapp.gateway import is_loopback
        from aiapp.server import AUTH_ENV
        from aiapp.server._auth import load_key_store
        from aiapp.server._proto import HTTP_PROTOCOL

        if config:
            os.environ["AIAPP_CONFIG"] = str(config)
        if max_body_bytes is not None:
            os.environ["AIAPP_SERVER_MAX_BODY_BYTES"] = str(max_body_bytes)
        if timeout_s is not None:
            os.environ["AIAPP_SERVER_TIMEOUT_S"] = str(timeout_s)
        settings = load_settings()  # fail here, once, with the config error, not in every worker
        if no_auth:
            os.environ[AUTH_ENV] = "none"
        elif load_key_store(settings) is not None:
            os.environ[AUTH_ENV] = "keys"
        elif is_loopback(host):
            os.environ[AUTH_ENV] = "none"
            typer.secho(
                "warning: no key store; serving OPEN on a loopback host (local use only)",
                err=True,
                fg="yellow",
            )
        else:
            raise ConfigError(
                f"refusing to serve open on {host}: create virtual keys (`aiapp keys create`) or pass --no-auth",
                field="--host",
            )
        typer.echo(f"aiapp serve: http://{host}:{port}/v1 ({workers} worker(s))", err=True)
        # uvicorn finishes in-flight requests and streams on SIGTERM, then raises the signal again
        # under the handler that was there before it: this no-op makes that clean stop exit 0.
        signal.signal(signal.SIGTERM, _stopped)
        uvicorn.run(
            "aiapp.server:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_graceful_shutdown=graceful_s,
            access_log=False,
            log_level="warning",
            http=HTTP_PROTOCOL,  # coalesced writes: aiapp.server._proto
            ws="none",
        )


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's graceful shutdown: nothing left to do, the command returns."""
