"""``aiapp traces``: recent calls, one trace in detail, feedback, the flywheel (export), online
scoring and retention."""

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
            who = f" ({fb['user']})" if fb.get("user") else ""
            typer.echo(f"    feedback: {fb['score']:+g}{who} {fb['comment'] or ''}")
        for sc in store.scores(s.trace_id) if store and s is spans[-1] else []:
            value = "unscored" if sc["value"] is None else f"{sc['value']:.3f}"
            typer.echo(f"    score: {sc['name']} {value} [{sc['source']}] {sc['comment'] or ''}")


@traces_app.command("feedback", context_settings={"ignore_unknown_options": True})
def feedback_cmd(
    trace_id: str = typer.Argument(..., help="Trace id (a unique prefix is enough)."),
    score: str = typer.Argument(..., help="+1 / -1 (thumbs) or a rating in [0, 1]."),
    comment: str | None = typer.Argument(None, help="What was good or bad about the answer."),
    user: str | None = typer.Option(None, "--user", help="Who gives the feedback."),
    config: str | None = ConfigOption,
) -> None:
    """Store feedback on a trace (exported like a score): aiapp traces feedback TRACE +1 "comment"."""
    from aiapp.gateway import feedback

    gw = _gateway(config)
    try:
        stored = feedback(trace_id, score, comment=comment, user=user, gateway=gw)
        gw.tracer.flush_exports()
    finally:
        gw.close()
    typer.echo(f"feedback {stored.score:+g} stored on trace {stored.trace_id}")


@traces_app.command("export")
def export_cmd(
    kind: str = typer.Option(
        ..., "--as", help="eval (cases for a suite), sft (OpenAI chat fine-tuning) or preference."
    ),
    output: str = typer.Option(..., "--output", "-o", help="The JSONL file to write."),
    filters: list[str] = typer.Option(
        [],
        "--filter",
        help="key=value, repeatable: route, prompt, since, until, feedback, guard_triggered, score_below.",
    ),
    route: str | None = typer.Option(None, help="Only traces on this route."),
    prompt: str | None = typer.Option(None, help="Only traces of this prompt (name or name@version)."),
    since: str | None = typer.Option(None, help="Only traces since (30m, 12h, 1d, 2w or an ISO date)."),
    until: str | None = typer.Option(None, help="Only traces before (a duration ago or an ISO date)."),
    feedback_sign: str | None = typer.Option(None, "--feedback", help="positive, negative, any or none."),
    guard_triggered: bool | None = typer.Option(
        None, "--guard-triggered/--no-guard-triggered", help="Only traces where a guard acted (or none did)."
    ),
    score_below: list[str] = typer.Option(
        [], "--score-below", help="scorer<threshold, e.g. faithfulness<0.5."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", help="Look at the newest N traces at most."),
    dedup: bool = typer.Option(True, "--dedup/--no-dedup", help="Collapse near-duplicate questions."),
    threshold: float | None = typer.Option(None, help="Cosine similarity for near-duplicates (default 0.9)."),
    pairwise_judge: str | None = typer.Option(
        None, "--pairwise-judge", help="For --as preference: judge unrated answers A/B on this route."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Write traces as JSONL eval cases, SFT rows or preference pairs (PII redacted)."""
    from aiapp.errors import InputError
    from aiapp.evals import TraceFilter, export_traces
    from aiapp.evals._from_traces import DEDUP_THRESHOLD, EXPORT_KINDS
    from aiapp.evals._interactions import parse_score_below

    if kind not in EXPORT_KINDS:
        raise InputError(f"--as must be one of {', '.join(EXPORT_KINDS)}, not {kind!r}")
    below: dict[str, float] = {}
    for entry in score_below:
        below.update(parse_score_below(entry))
    flt = TraceFilter.parse(
        filters,
        route=route,
        prompt=prompt,
        since=since,
        until=until,
        feedback=feedback_sign,
        guard_triggered=guard_triggered,
        score_below=below,
        limit=limit,
    )
    store = _require_store(config)
    gw = _gateway(config) if pairwise_judge else None
    try:
        judge = None
        if gw is not None:
            from aiapp.evals import build_scorer

            judge = build_scorer("judge_pairwise", None, gateway=gw, judge=pairwise_judge)
        report = export_traces(
            store,
            kind,  # checked above against EXPORT_KINDS
            output,
            filter=flt,
            dedup=dedup,
            threshold=DEDUP_THRESHOLD if threshold is None else threshold,
            pairwise=judge,  # type: ignore[arg-type]  # the registry builds a PairwiseJudge
        )
    finally:
        if gw is not None:
            gw.close()
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    typer.echo(
        f"wrote {report.rows} {kind} row(s) to {report.path} from {report.traces} trace(s)"
        f" ({report.collapsed} near-duplicate(s) collapsed, {report.redactions} string(s) redacted)"
    )
    for reason, count in sorted(report.skipped.items()):
        typer.echo(f"  skipped {count}: {reason}")


@traces_app.command("score")
def score_cmd(
    scorers: str = typer.Option(
        ..., "--scorers", help="Comma-separated scorer names (faithfulness,judge_rubric)."
    ),
    sample: float = typer.Option(1.0, "--sample", help="Fraction of traces to score, in (0, 1]."),
    since: str | None = typer.Option(None, help="Only traces since (30m, 12h, 1d, 2w or an ISO date)."),
    until: str | None = typer.Option(None, help="Only traces before."),
    route: str | None = typer.Option(None, help="Only traces on this route."),
    judge: str | None = typer.Option(None, help="Judge route for judge scorers (default: their own)."),
    seed: int = typer.Option(0, help="Seed of the sample."),
    rescore: bool = typer.Option(False, help="Score again traces scored before."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Score stored traces with the eval harness's scorers; scores are stored and exported."""
    from aiapp.evals import TraceFilter, score_traces

    names = [n.strip() for n in scorers.split(",") if n.strip()]
    flt = TraceFilter.parse([], route=route, since=since, until=until)
    gw = _gateway(config)
    try:
        report = score_traces(gw, names, filter=flt, sample=sample, seed=seed, judge=judge, rescore=rescore)
    finally:
        gw.close()
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    typer.echo(
        f"scored {report.sampled} of {report.traces} trace(s)"
        + (f" ({report.already_scored} scored before, skipped)" if report.already_scored else "")
    )
    for s in report.scorers:
        mean = "-" if s.mean is None else f"{s.mean:.3f}"
        typer.echo(f"  {s.scorer}: {s.scored} scored, mean {mean}; {s.unscored} unscored")
        for reason, count in sorted(s.reasons.items(), key=lambda kv: -kv[1]):
            typer.echo(f"    unscored {count}: {reason}")


@traces_app.command("prune")
def prune_cmd(
    older_than: str = typer.Option(..., "--older-than", help="Delete traces older than this (30d, 12h, 2w)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Delete the spans, feedback and scores of old traces, in one transaction."""
    import time

    from aiapp.evals._interactions import parse_duration

    cutoff = time.time() - parse_duration(older_than)
    store = _store(config)
    counts = (
        store.prune(cutoff, dry_run=dry_run)
        if store
        else {"traces": 0, "spans": 0, "feedback": 0, "scores": 0}
    )
    if as_json:
        print_json({**counts, "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"{verb} {counts['traces']} trace(s) older than {older_than}: {counts['spans']} span(s), "
        f"{counts['feedback']} feedback row(s), {counts['scores']} score(s)"
    )


def _gateway(config: str | None):  # type: ignore[no-untyped-def]
    from aiapp.cli._common import gateway

    return gateway(config)


def _require_store(config: str | None):  # type: ignore[no-untyped-def]
    from aiapp.errors import InputError

    store = _store(config)
    if store is None:
        raise InputError('no traces yet: run `aiapp ask "..."` first')
    return store


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
