"""``aiapp review``: human-rubric queues under ``review/`` (create them; see their agreement)."""

from __future__ import annotations

from pathlib import Path

import typer

from aiapp.cli._common import ConfigOption, print_json

review_app = typer.Typer(
    help="Human review queues under review/ (grade them in `aiapp ui`).", no_args_is_help=True
)
RootOption = typer.Option(Path("."), "--root", help="Repository root (the queue goes under <root>/review/).")


def register(app: typer.Typer) -> None:
    """Add the command group to ``app``."""
    app.add_typer(review_app, name="review")


@review_app.command("create")
def create(
    suite: str | None = typer.Option(
        None, "--suite", help="Build the queue from this suite's latest (or --run) eval run."
    ),
    run: str | None = typer.Option(
        None, "--run", help="The run id under $AIAPP_HOME/evals/<suite>/ (default: newest)."
    ),
    traces: str | None = typer.Option(
        None, "--traces", help="Build a queue with this name from recent traces."
    ),
    route: str = typer.Option("", "--route", help="With --traces: only traces on this route."),
    prompt: str = typer.Option("", "--prompt", help="With --traces: only traces of this prompt version."),
    limit: int = typer.Option(50, "--limit", help="With --traces: how many traces, newest first."),
    name: str | None = typer.Option(None, "--name", help="Queue name (default: the suite's name)."),
    criteria: str | None = typer.Option(
        None, "--criteria", help="What raters grade (default: the suite's judge criteria)."
    ),
    scale_min: int = typer.Option(1, "--scale-min", help="Lowest grade."),
    scale_max: int = typer.Option(5, "--scale-max", help="Highest grade."),
    root: Path = RootOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Create (or refresh) a review queue: one item per eval case or per trace.

    A suite's queue is named after the suite, so its ratings (review/<suite>/ratings/*.jsonl)
    validate the suite's LLM judges for the gate. Existing ratings are kept.
    """
    from aiapp.config import load_settings
    from aiapp.errors import InputError
    from aiapp.evals._review import queue_dir
    from aiapp.ui._queues import queue_from_suite, queue_from_traces
    from aiapp.ui._traces import Filters, TraceReader

    if (suite is None) == (traces is None):
        raise InputError("pass exactly one of --suite NAME or --traces NAME")
    settings = load_settings(config)
    scale = (scale_min, scale_max)
    if suite is not None:
        queue, count = queue_from_suite(
            settings.home, root, suite, run=run, name=name, criteria=criteria, scale=scale
        )
    else:
        if not criteria:
            raise InputError("--criteria is required with --traces")
        reader = TraceReader(settings.traces_path)
        queue, count = queue_from_traces(
            reader,
            root,
            name or str(traces),
            criteria=criteria,
            filters=Filters(route=route, prompt=prompt, range="all"),
            limit=limit,
            scale=scale,
        )
    folder = queue_dir(root, queue.name)
    if as_json:
        print_json({"queue": queue.name, "path": str(folder), "items": count})
    else:
        typer.echo(f"review queue {queue.name}: {count} items in {folder}")


@review_app.command("status")
def status(
    queue: str = typer.Argument(..., help="The queue name."),
    root: Path = RootOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Ratings so far, inter-rater agreement, and each judge's agreement with the raters."""
    from aiapp.config import load_settings
    from aiapp.evals._review import judge_validation, load_queue, load_ratings, rater_agreement

    settings = load_settings(config)
    header, items = load_queue(root, queue)
    ratings = load_ratings(root, queue, queue=header)
    inter = rater_agreement(ratings)
    judges = []
    if header.source == "suite" and header.suite:
        from aiapp.ui._evals import EvalStore

        run = EvalStore(settings.home).latest(header.suite)
        if run is not None:
            scale = (float(header.rubric.scale_min), float(header.rubric.scale_max))
            judges = [c.as_dict() for c in judge_validation(run.rows(), ratings, scale=scale).values()]
    raters = sorted({r.rater for r in ratings})
    data = {
        "queue": queue,
        "items": len(items),
        "ratings": len(ratings),
        "raters": raters,
        "inter_rater": {
            "method": inter.method,
            "value": inter.value,
            "items": inter.items,
            "reason": inter.reason,
        },
        "judges": judges,
    }
    if as_json:
        print_json(data)
        return
    typer.echo(f"{queue}: {len(ratings)} ratings of {len(items)} items by {', '.join(raters) or 'nobody'}")
    value = "—" if inter.value is None else f"{inter.value:.3f}"
    typer.echo(f"raters: {inter.method} {value} {inter.reason}".rstrip())
    for j in judges:
        typer.echo(f"judge {j['metric']}: {'may gate' if j['may_gate'] else 'cannot gate'} — {j['note']}")
