"""``aiapp keys``: virtual keys for ``aiapp serve`` (create, list, revoke).

Keys live in ``$AIAPP_HOME/keys.db``, or in Redis when ``redis_url`` is set; a raw key is printed
once, at creation, and never stored.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import typer

from aiapp.cli._common import ConfigOption, console, print_json

if TYPE_CHECKING:
    from aiapp.config import Settings
    from aiapp.server._keys import KeyRecord, KeyStore

keys_app = typer.Typer(help="Virtual keys for `aiapp serve`: create, list, revoke.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the command group to ``app``."""
    app.add_typer(keys_app, name="keys")


def _store(config: str | None) -> tuple[Settings, KeyStore]:
    from aiapp.config import load_settings
    from aiapp.server._keys import KeyStore

    settings = load_settings(config)
    return settings, KeyStore.from_settings(settings)


@keys_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Who the key is for (team-a)."),
    routes: str | None = typer.Option(
        None, "--routes", help="Comma-separated routes it may use (default: all)."
    ),
    budget_usd: float | None = typer.Option(
        None, "--budget-usd", help="Total budget in USD (default: none)."
    ),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute."),
    expires: str | None = typer.Option(None, "--expires", help="Lifetime: 30d, 12h, 90m (default: never)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with the raw key)."),
    config: str | None = ConfigOption,
) -> None:
    """Create a key and print it once: it cannot be shown again."""
    from aiapp.errors import InputError
    from aiapp.server._keys import parse_duration

    settings, store = _store(config)
    route_list = [r.strip() for r in routes.split(",") if r.strip()] if routes is not None else None
    unknown = [r for r in route_list or [] if r not in settings.routes]
    if unknown:
        known = ", ".join(sorted(settings.routes))
        raise InputError(f"unknown route(s) {', '.join(map(repr, unknown))} (known: {known})")
    record, raw = store.create_key(
        name,
        routes=route_list,
        budget_usd=budget_usd,
        rpm=rpm,
        tpm=tpm,
        expires_in_s=parse_duration(expires) if expires else None,
    )
    store.close()
    if as_json:
        print_json({**record.to_json(), "key": raw})
        return
    typer.echo(raw)
    typer.secho(
        f"created key {record.name!r} (id {record.id}); this is the only time it is shown — store it now",
        err=True,
        fg="yellow",
    )


@keys_app.command("list")
def list_keys(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """List keys with their limits and spend (raw keys are never stored, so never shown)."""
    from aiapp.gateway.budgets import open_ledger

    settings, store = _store(config)
    records = store.list_keys()
    store.close()
    ledger = open_ledger(settings)
    try:
        rows = [_row(record, *ledger.spent("key", record.budget_key, "total")) for record in records]
    finally:
        ledger.close()
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no keys yet: aiapp keys create --name team-a")
        return
    from rich.table import Table

    table = Table(title="virtual keys")
    for column in ("name", "id", "status", "routes", "spent", "budget", "rpm", "tpm", "expires", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["id"],
            row["status"],
            ",".join(row["routes"]) if row["routes"] is not None else "all",
            f"${row['spent_usd']:.4f}",
            "-" if row["budget_usd"] is None else f"${row['budget_usd']:.2f}",
            str(row["rpm"] or "-"),
            str(row["tpm"] or "-"),
            _when(row["expires_at"]),
            _when(row["created_at"]),
        )
    console().print(table)


@keys_app.command("revoke")
def revoke(
    name: str = typer.Argument(..., help="The key's name (every live key with it) or its id."),
    config: str | None = ConfigOption,
) -> None:
    """Revoke a key: every server refuses it from its next request."""
    _, store = _store(config)
    revoked = store.revoke(name)
    store.close()
    for record in revoked:
        typer.echo(f"revoked key {record.name!r} (id {record.id})")


def _row(record: KeyRecord, spent: float, reserved: float) -> dict[str, Any]:
    import time

    status = "revoked" if record.revoked else "live"
    if not record.revoked and record.expires_at is not None and record.expires_at <= time.time():
        status = "expired"
    return {**record.to_json(), "status": status, "spent_usd": spent, "reserved_usd": reserved}


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")
