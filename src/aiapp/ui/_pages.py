"""The console's pages: each handler reads through the context and renders one template."""

from __future__ import annotations

import difflib
import json
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from aiapp.errors import AiappError, InputError
from aiapp.evals._review import (
    judge_validation,
    list_queues,
    load_queue,
    load_ratings,
    rater_agreement,
    save_rating,
)
from aiapp.ui._charts import bar_chart, line_chart
from aiapp.ui._evals import RunView, case_rows, compare
from aiapp.ui._traces import RANGES, Filters, span_tree

if TYPE_CHECKING:
    from aiapp.prompts import Prompt, PromptRegistry
    from aiapp.ui._app import UiContext


def _html(ctx: UiContext, request: Request, template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(ctx.renderer.page(template, request, **context))


# -- dashboard ------------------------------------------------------------------------------------


def dashboard(ctx: UiContext, request: Request) -> HTMLResponse:
    """Requests, latency, tokens, cost, cache hits, guard triggers, errors and feedback over time."""
    f = Filters.from_query(request.query_params)
    d = ctx.traces.dashboard(f)
    s, b, w = d.series, d.buckets, d.bucket_s
    charts = [
        line_chart("Requests", [("requests", s["requests"])], b, w, chart_id="chart-requests"),
        line_chart(
            "Latency (ms)", [("p50", s["p50_ms"]), ("p95", s["p95_ms"])], b, w, chart_id="chart-latency"
        ),
        line_chart("Tokens", [("tokens", s["tokens"])], b, w, chart_id="chart-tokens"),
        line_chart("Cost (USD)", [("cost", s["cost_usd"])], b, w, unit="$", chart_id="chart-cost"),
        line_chart("Cache hit rate", [("hit rate", s["cache_hit_rate"])], b, w, chart_id="chart-cache"),
        line_chart(
            "Errors and guard triggers",
            [("errors", s["errors"]), ("guards", s["guard_triggers"])],
            b,
            w,
            chart_id="chart-errors",
        ),
        line_chart("Feedback (mean score)", [("feedback", s["feedback"])], b, w, chart_id="chart-feedback"),
    ]
    return _html(
        ctx, request, "dashboard.html", title="Dashboard", d=d, f=f, ranges=list(RANGES), charts=charts
    )


# -- traces ---------------------------------------------------------------------------------------


def traces(ctx: UiContext, request: Request) -> HTMLResponse:
    """Root spans, newest first, filtered."""
    f = Filters.from_query(request.query_params)
    if "range" not in request.query_params:
        f.range = "all"
    before_raw = request.query_params.get("before")
    before = float(before_raw) if before_raw else None
    rows = ctx.traces.traces(f, before=before)
    older = rows[-1]["started_at"] if len(rows) == 50 else None
    return _html(
        ctx,
        request,
        "traces.html",
        title="Traces",
        rows=rows,
        f=f,
        ranges=list(RANGES),
        options=ctx.traces.options(),
        older=older,
    )


def trace(ctx: UiContext, request: Request) -> HTMLResponse:
    """One trace: the span tree with timings, inputs and outputs, chunks, tools, guards, feedback."""
    trace_id = request.path_params["trace_id"]
    spans = ctx.traces.trace(trace_id)
    if not spans:
        raise InputError(f"no trace {trace_id!r} in {ctx.traces.path}")
    full_id = spans[0].trace_id
    start = min(s.started_at for s in spans)
    total = max((s.started_at - start) * 1000 + s.duration_ms for s in spans) or 1.0
    tree = [
        {
            "depth": depth,
            "span": span,
            "offset_pct": (span.started_at - start) * 1000 / total * 100,
            "width_pct": max(0.5, span.duration_ms / total * 100),
            "hits": span.attributes.get("hits") if span.kind == "retrieval" else None,
            "guards": span.attributes.get("guards") or [],
            "attributes": {k: v for k, v in span.attributes.items() if k not in ("hits", "guards")},
        }
        for depth, span in span_tree(spans)
    ]
    return _html(
        ctx,
        request,
        "trace.html",
        title=f"Trace {full_id[:12]}",
        trace_id=full_id,
        tree=tree,
        total_ms=total,
        feedback=ctx.traces.feedback(full_id),
        scores=ctx.traces.scores(full_id),
    )


# -- evals ----------------------------------------------------------------------------------------


def evals_index(ctx: UiContext, request: Request) -> HTMLResponse:
    """Suites and their runs, newest first, with a metric chart per suite."""
    suites = []
    for name in ctx.evals.suites():
        runs = ctx.evals.runs(name)
        metrics = sorted({m for r in runs for m in r.estimates})
        charts = [
            bar_chart(
                m,
                [
                    (r.run_id[:10], r.estimates[m].mean or 0.0)
                    for r in reversed(runs[:12])
                    if m in r.estimates
                ],
                chart_id=f"chart-{name}-{m}",
            )
            for m in metrics[:4]
        ]
        suites.append({"name": name, "runs": runs, "metrics": metrics, "charts": charts})
    return _html(ctx, request, "evals.html", title="Evals", suites=suites)


def eval_run(ctx: UiContext, request: Request) -> HTMLResponse:
    """One run's report: metrics with intervals, per-case results failures first."""
    run = ctx.evals.run(request.path_params["suite"], request.path_params["run"])
    rows = case_rows(run)
    return _html(
        ctx,
        request,
        "run.html",
        title=f"{run.suite} · {run.run_id}",
        run=run,
        rows=rows[:500],
        total=len(rows),
        metrics=sorted(run.estimates),
        others=[r for r in ctx.evals.runs(run.suite) if r.run_id != run.run_id],
    )


def evals_compare(ctx: UiContext, request: Request) -> HTMLResponse:
    """Run B against run A: metric deltas with intervals, verdict changes, outputs side by side."""
    suite = request.path_params["suite"]
    a_id, b_id = request.query_params.get("a"), request.query_params.get("b")
    if not a_id or not b_id:
        raise InputError("compare needs two runs: ?a=<run id>&b=<run id>")
    result = compare(ctx.evals.run(suite, a_id), ctx.evals.run(suite, b_id))
    return _html(ctx, request, "compare.html", title=f"Compare {suite}", c=result, suite=suite)


# -- review ---------------------------------------------------------------------------------------


def review_index(ctx: UiContext, request: Request) -> HTMLResponse:
    """The review queues under ``review/``."""
    queues = []
    for name in list_queues(ctx.root):
        queue, items = load_queue(ctx.root, name)
        ratings = load_ratings(ctx.root, name, queue=queue)
        queues.append(
            {
                "queue": queue,
                "n_items": len(items),
                "raters": sorted({r.rater for r in ratings}),
                "ratings": len(ratings),
            }
        )
    return _html(
        ctx,
        request,
        "review_list.html",
        title="Review",
        queues=queues,
        root=ctx.root,
        suites=ctx.evals.suites(),
        options=ctx.traces.options(),
    )


def create_queue_from(ctx: UiContext, body: Any) -> dict[str, Any]:
    """Build a queue from ``{source: suite|traces, suite, name, criteria, route, prompt, limit}``."""
    from aiapp.ui._queues import queue_from_suite, queue_from_traces

    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    criteria = str(body.get("criteria") or "").strip() or None
    if body.get("source") == "suite":
        suite = str(body.get("suite") or "")
        queue, count = queue_from_suite(
            ctx.settings.home, ctx.root, suite, name=str(body.get("name") or "") or None, criteria=criteria
        )
    elif body.get("source") == "traces":
        name = str(body.get("name") or "").strip()
        if not name:
            raise InputError("a queue built from traces needs a name")
        try:
            limit = max(1, min(1000, int(body.get("limit") or 50)))
        except (TypeError, ValueError):
            raise InputError(f"limit {body.get('limit')!r} is not a number") from None
        f = Filters(route=str(body.get("route") or ""), prompt=str(body.get("prompt") or ""), range="all")
        queue, count = queue_from_traces(
            ctx.traces, ctx.root, name, criteria=criteria or "", filters=f, limit=limit
        )
    else:
        raise InputError("source must be 'suite' or 'traces'")
    return {"ok": True, "queue": queue.name, "items": count, "url": f"/review/{queue.name}"}


def agreement_panel(ctx: UiContext, name: str) -> dict[str, Any]:
    """Inter-rater agreement and each judge's agreement with the raters, from the files."""
    queue, items = load_queue(ctx.root, name)
    ratings = load_ratings(ctx.root, name, queue=queue)
    per_rater: dict[str, int] = {}
    for r in ratings:
        per_rater[r.rater] = per_rater.get(r.rater, 0) + 1
    judges: list[dict[str, Any]] = []
    run: RunView | None = None
    if queue.source == "suite" and queue.suite:
        try:
            run = ctx.evals.run(queue.suite, queue.run) if queue.run else ctx.evals.latest(queue.suite)
        except InputError:
            run = ctx.evals.latest(queue.suite)
        if run is not None:
            scale = (float(queue.rubric.scale_min), float(queue.rubric.scale_max))
            checks = judge_validation(run.rows(), ratings, scale=scale, where=f"review/{name}/")
            judges = [c.as_dict() for c in checks.values()]
    return {
        "queue": queue,
        "n_items": len(items),
        "n_ratings": len(ratings),
        "per_rater": per_rater,
        "inter_rater": rater_agreement(ratings),
        "judges": judges,
        "run": run,
    }


def review_queue(ctx: UiContext, request: Request) -> HTMLResponse:
    """Grade a queue's items with the rubric's scale: keys 1–N grade, j/k move, c comments."""
    name = request.path_params["queue"]
    queue, items = load_queue(ctx.root, name)
    rater = (request.query_params.get("rater") or "").strip()
    mine: dict[str, Any] = {}
    if rater:
        mine = {r.key: r for r in load_ratings(ctx.root, name, queue=queue) if r.rater == rater}
    scale = list(range(queue.rubric.scale_min, queue.rubric.scale_max + 1))
    first_open = next((i for i, item in enumerate(items) if item.key not in mine), 0)
    return _html(
        ctx,
        request,
        "review.html",
        title=f"Review {name}",
        queue=queue,
        items=items,
        rater=rater,
        mine=mine,
        scale=scale,
        start=first_open,
        panel=ctx.renderer.fragment("_agreement.html", p=agreement_panel(ctx, name)),
    )


def review_agreement(ctx: UiContext, request: Request) -> HTMLResponse:
    """The agreement panel alone."""
    return HTMLResponse(
        ctx.renderer.fragment("_agreement.html", p=agreement_panel(ctx, request.path_params["queue"]))
    )


def rate(ctx: UiContext, name: str, body: Any) -> dict[str, Any]:
    """Save one grade (``{rater, key, score, comment}``); returns it and the refreshed panel."""
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    rater = str(body.get("rater") or "").strip()
    if not rater:
        raise InputError("rater is required")
    key = str(body.get("key") or "")
    try:
        score = float(body.get("score"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"score {body.get('score')!r} is not a number") from None
    rating = save_rating(ctx.root, name, rater, key, score, str(body.get("comment") or ""))
    panel = ctx.renderer.fragment("_agreement.html", p=agreement_panel(ctx, name))
    return {"ok": True, "rating": rating.model_dump(), "panel": panel}


# -- prompts --------------------------------------------------------------------------------------


def _registry(ctx: UiContext) -> PromptRegistry:
    from aiapp.prompts import PromptRegistry

    return PromptRegistry(ctx.prompts_dir)


def prompts_index(ctx: UiContext, request: Request) -> HTMLResponse:
    """Prompt names, versions and labels."""
    if not ctx.prompts_dir.is_dir():
        return _html(
            ctx,
            request,
            "prompts.html",
            title="Prompts",
            rows=[],
            problems=[],
            directory=ctx.prompts_dir,
            missing=True,
        )
    registry = _registry(ctx)
    rows = [
        {"name": n, "versions": registry.versions(n), "labels": registry.labels(n)} for n in registry.names()
    ]
    return _html(
        ctx,
        request,
        "prompts.html",
        title="Prompts",
        rows=rows,
        problems=registry.problems,
        directory=ctx.prompts_dir,
    )


def _source(prompt: Prompt) -> str:
    if prompt.source is not None:
        return prompt.source
    return json.dumps(prompt.model_dump(mode="json", by_alias=True), indent=2)


def prompt(ctx: UiContext, request: Request) -> HTMLResponse:
    """One prompt version: its file, and a preview rendered with the variables given."""
    name = request.path_params["name"]
    registry = _registry(ctx)
    ref = request.query_params.get("ref") or name
    chosen = registry.get(ref if "@" in ref or ref == name else f"{name}@{ref}")
    values: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    for var, spec in chosen.variables.items():
        given = request.query_params.get(f"var_{var}")
        if given is None:
            typed[var] = spec.sample_value()
            values[var] = typed[var] if isinstance(typed[var], str) else json.dumps(typed[var])
        else:
            values[var] = given
            typed[var] = given if spec.type == "string" else _typed(given)
    error = None
    messages: list[Any] = []
    try:
        messages = chosen.render(typed)
    except AiappError as exc:
        error = str(exc)
    return _html(
        ctx,
        request,
        "prompt.html",
        title=f"Prompt {chosen.ref}",
        name=name,
        p=chosen,
        source=_source(chosen),
        values=values,
        messages=messages,
        error=error,
        versions=registry.versions(name),
        labels=registry.labels(name),
    )


def _typed(value: str) -> Any:
    """A form value for a non-string variable: its JSON value, or the text when it is not JSON."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def prompt_diff(ctx: UiContext, request: Request) -> HTMLResponse:
    """A line diff between two versions or labels of a prompt."""
    name = request.path_params["name"]
    registry = _registry(ctx)
    versions = registry.versions(name)
    labels = registry.labels(name)
    a_ref = request.query_params.get("a") or (f"v{versions[-2]}" if len(versions) > 1 else f"v{versions[0]}")
    b_ref = request.query_params.get("b") or f"v{versions[-1]}"
    a, b = registry.get(f"{name}@{a_ref}"), registry.get(f"{name}@{b_ref}")
    lines = []
    for line in difflib.unified_diff(
        _source(a).splitlines(), _source(b).splitlines(), fromfile=a.ref, tofile=b.ref, lineterm="", n=3
    ):
        kind = (
            "meta"
            if line.startswith(("---", "+++", "@@"))
            else "add"
            if line.startswith("+")
            else "del"
            if line.startswith("-")
            else "same"
        )
        lines.append((kind, line))
    return _html(
        ctx,
        request,
        "diff.html",
        title=f"Diff {name}",
        name=name,
        a=a,
        b=b,
        a_ref=a_ref,
        b_ref=b_ref,
        lines=lines,
        choices=[f"v{v}" for v in versions] + sorted(labels),
        same_hash=a.content_hash == b.content_hash,
        generated_at=time.time(),
    )
