"""Shared CLI helpers: loading the gateway and printing JSON."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from aiapp.gateway import Gateway


def gateway(config: str | None) -> Gateway:
    """Build the gateway from ``--config`` or the discovered config file.

    Imported here, not at the top: ``aiapp --help`` and commands that never call a model do not pay
    for the gateway (config, pydantic models, asyncio) at start-up.
    """
    from aiapp.gateway import Gateway

    return Gateway.from_config(config)


def console() -> Console:
    """A rich console; wide enough for tables when output is piped (CI logs, files)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def print_json(data: Any) -> None:
    """Print one JSON document to stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


ConfigOption = typer.Option(
    None, "--config", "-c", help="Config file (default: $AIAPP_CONFIG or configs/aiapp.yaml)."
)
