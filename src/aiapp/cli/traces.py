"""``aiapp traces``: recent calls, and one trace in detail."""

from __future__ import annotations

import datetime as dt

import typer

from aiapp.cli._common import ConfigOption, console, print_json

traces_app = typer.Typer(help="Inspect recorded traces.", no_args_is_help=False, invoke_without_command=True)


def register(app: typer.Typer) -> None:
    """Add the command group to ``app``."""
    app.add_typer(traces_app, name="traces")


def _store(config: str | None):  # type: ignore[no-untyped-def]
    from aiapp.config import load_settings
    from aiapp.tracing import TraceStore

    settings = load_settings(config)
    if not settings.traces_path.exists():
        return None
    return TraceStore(settings.traces_path)


@traces_app.callback()
def traces(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", "-n", help="How many recent spans."),
    kind: str | None = typer.Option(None, help="Only spans of this kind (llm, retrieval, tool, app ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """List recent spans, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    store = _store(config)
    spans = store.recent(limit, kind=kind) if store else []
    if as_json:
        print_json([s.model_dump(mode="json") for s in spans])
        return
    if not spans:
        typer.echo('no traces yet: run `aiapp complete "hello"`')
        return
    from rich.table import Table

    table = Table(title="recent traces")
    for column in (
        "time",
        "trace",
        "kind",
        "route",
        "model",
        "tries",
        "ms",
        "tokens",
        "cost",
        "prompt",
        "status",
    ):
        table.add_column(column)
    for s in spans:
        table.add_row(
            dt.datetime.fromtimestamp(s.started_at).strftime("%H:%M:%S"),
            s.trace_id,
            s.kind,
            s.route or "",
            s.model or "",
            str(s.attempts or ""),
            f"{s.duration_ms:.1f}",
            f"{s.input_tokens or 0}+{s.output_tokens or 0}",
            "?" if s.cost_usd is None else f"${s.cost_usd:.5f}",
            s.prompt_ref or "",
            s.status if s.cache_hit is not True else f"{s.status} (cache)",
        )
    console().print(table)


@traces_app.command("show")
def show(
    trace_id: str = typer.Argument(..., help="Trace id (a unique prefix is enough)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Show every span of one trace as a timeline."""
    from aiapp.errors import InputError

    store = _store(config)
    spans = store.trace(trace_id) if store else []
    if not spans:
        raise InputError(f"no trace with id {trace_id!r}")
    if as_json:
        print_json([s.model_dump(mode="json") for s in spans])
        return
    t0 = spans[0].started_at
    for s in spans:
        offset = (s.started_at - t0) * 1000.0
        header = f"+{offset:7.1f} ms  [{s.kind}] {s.name}  {s.duration_ms:.1f} ms  {s.status}"
        typer.secho(header, bold=True)
        details = {
            "route": s.route,
            "model": s.model,
            "tried": " → ".join(s.deployments) if s.deployments else None,
            "tokens": f"{s.input_tokens}+{s.output_tokens}" if s.input_tokens is not None else None,
            "cost": None if s.cost_usd is None else f"${s.cost_usd:.6f}",
            "prompt": f"{s.prompt_ref} ({s.prompt_hash})" if s.prompt_ref else None,
            "config": s.config_hash,
            "error": s.error,
        }
        for key, value in details.items():
            if value:
                typer.echo(f"    {key}: {value}")
        if s.output:
            text = str(s.output)
            typer.echo(f"    output: {text[:400]}{'…' if len(text) > 400 else ''}")
        for fb in store.feedback(s.trace_id) if store and s is spans[-1] else []:
            typer.echo(f"    feedback: {fb['score']:+g} {fb['comment'] or ''}")
