"""``aiapp ui``: the local web console (dashboard, traces, evals, review, prompts) on uvicorn."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from aiapp.cli._common import ConfigOption


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command("ui")
    def ui(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
        port: int = typer.Option(8765, "--port", help="Port to listen on."),
        token: str | None = typer.Option(
            None, "--token", help="Access token (or AIAPP_UI_TOKEN); required on a non-loopback host."
        ),
        root: Path = typer.Option(
            Path("."), "--root", help="Repository root (review/ and prompts/ live here)."
        ),
        config: str | None = ConfigOption,
    ) -> None:
        """Open the console: dashboard, traces, eval runs, human review and prompts in a browser."""
        import uvicorn

        from aiapp.config import load_settings
        from aiapp.ui import TOKEN_ENV, check_binding, create_app

        token = token or os.environ.get(TOKEN_ENV) or None
        check_binding(host, token)
        settings = load_settings(config)
        app_ = create_app(settings=settings, root=root.resolve(), token=token)
        suffix = "/?token=…" if token else "/"
        typer.echo(f"aiapp ui: http://{host}:{port}{suffix}", err=True)
        uvicorn.run(app_, host=host, port=port, access_log=False, log_level="warning")
