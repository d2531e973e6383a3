"""``aiapp traces``: recent calls, and one trace in detail."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import typer

from aiapp.cli._common import ConfigOption, console, print_json

if TYPE_CHECKING:
    from aiapp.tracing import SpanRecord

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
    depths = _depths(spans)
    for s in spans:
        offset = (s.started_at - t0) * 1000.0
        pad = "  " * depths[s.span_id]
        header = f"+{offset:7.1f} ms  {pad}[{s.kind}] {s.name}  {s.duration_ms:.1f} ms  {s.status}"
        typer.secho(header, bold=True)
        pad = " " * 15 + pad  # details sit under the span name, nested like their span
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
        if s.kind != "llm":  # agent steps, tools, approvals: what went in and the notes recorded
            details["input"] = _clip(s.input) if s.input not in (None, "", [], {}) else None
            details["notes"] = ", ".join(f"{k}={v}" for k, v in s.attributes.items() if _short(v)) or None
        for key, value in details.items():
            if value:
                typer.echo(f"{pad}{key}: {value}")
        for line in _guard_lines(s.attributes.get("guards")):
            typer.echo(f"{pad}guard: {line}")
        if s.output:
            typer.echo(f"{pad}output: {_clip(s.output)}")
        for fb in store.feedback(s.trace_id) if store and s is spans[-1] else []:
            typer.echo(f"    feedback: {fb['score']:+g} {fb['comment'] or ''}")


def _depths(spans: list[SpanRecord]) -> dict[str, int]:
    """How deep each span nests under the trace's root (parents outside the list count as roots)."""
    parents = {s.span_id: s.parent_id for s in spans}
    depths: dict[str, int] = {}
    for s in spans:
        depth, parent, seen = 0, s.parent_id, {s.span_id}
        while parent in parents and parent not in seen:
            seen.add(parent)
            depth, parent = depth + 1, parents[parent]
        depths[s.span_id] = depth
    return depths


def _clip(value: object, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return f"{text[:limit]}{'…' if len(text) > limit else ''}"


def _short(value: object) -> bool:
    return value not in (None, "", [], {}) and len(str(value)) <= 80


def _guard_lines(verdicts: object) -> list[str]:
    """One line per guard verdict: stage, name, action, reason, score, redaction placeholders, latency."""
    lines = []
    for v in verdicts if isinstance(verdicts, list) else []:
        if not isinstance(v, dict):
            continue
        parts = [str(v.get("stage", "")), str(v.get("name", "")), str(v.get("action", ""))]
        if v.get("reason"):
            parts.append(f"— {v['reason']}")
        if v.get("redactions"):
            parts.append(" ".join(map(str, v["redactions"])))
        extra = [f"score {v['score']}"] if v.get("score") is not None else []
        extra.append(f"{float(v.get('latency_ms') or 0.0):.1f} ms")
        lines.append(f"{' '.join(parts)} ({', '.join(extra)})")
    return lines
