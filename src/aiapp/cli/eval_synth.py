"""``aiapp eval synth`` and ``aiapp eval synth-apply``: synthetic test sets and their review."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from aiapp.cli._common import ConfigOption
from aiapp.cli.eval import eval_app

#: The offline template route, available under this name when no configured route has it.
OFFLINE_ROUTE = "local/heading-questions"


@eval_app.command("synth")
def synth_command(
    corpus: str = typer.Argument(..., help="Corpus name under corpora/ or a folder."),
    n: int = typer.Option(50, "--n", help="Pairs wanted."),
    route: str = typer.Option(
        ..., "--route", help=f"Route that writes the pairs ({OFFLINE_ROUTE}: the offline heading template)."
    ),
    kinds: str = typer.Option(
        "factual,howto,multi-hop,unanswerable", "--kinds", help="Comma-separated kinds of question."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Dataset file (JSONL); the review file goes beside it."
    ),
    check: str = typer.Option(
        "grounding",
        "--check",
        help="Support check: grounding (lexical, offline) or route (judged by --route).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for sampling chunks."),
    min_keep: int | None = typer.Option(
        None, "--min-keep", help="Fewest pairs that may survive (default n/2)."
    ),
    duplicate_threshold: float = typer.Option(
        0.92, "--duplicate-threshold", help="Questions this similar (cosine) are near-duplicates."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Write a synthetic test set: pairs grounded in sampled chunks, deduplicated and support-checked."""
    from aiapp.config import load_settings
    from aiapp.errors import InputError
    from aiapp.evals._synth import asynthesize, corpus_chunks, write_synth
    from aiapp.evals._synth_template import HeadingQuestionWriter
    from aiapp.gateway import Gateway, run_sync
    from aiapp.retrieval import Index

    if check not in ("grounding", "route"):
        raise InputError(f"--check must be grounding or route, not {check!r}")
    settings = load_settings(config)
    models = {OFFLINE_ROUTE: HeadingQuestionWriter()} if route == OFFLINE_ROUTE else {}
    embedder = Index("synth", settings=settings).embedder
    chunks = corpus_chunks(corpus, settings, embedder=embedder)
    with Gateway(settings, models=models) as gw:  # type: ignore[arg-type]
        result = run_sync(
            asynthesize(
                chunks,
                gateway=gw,
                route=route,
                n=n,
                kinds=[k.strip() for k in kinds.split(",") if k.strip()],
                seed=seed,
                embedder=embedder,
                duplicate_threshold=duplicate_threshold,
                check="route" if check == "route" else "grounding",
                min_keep=min_keep,
            )
        )
    dataset, review = write_synth(result, output)
    if as_json:
        typer.echo(
            json.dumps({"dataset": str(dataset), "review": str(review), **result.report.as_dict()}, indent=2)
        )
        return
    typer.echo(f"{result.report.explain()}")
    typer.echo(f"dataset: {dataset}")
    typer.echo(f"review:  {review}  (set each verdict to accept or reject, then `aiapp eval synth-apply`)")


@eval_app.command("synth-apply")
def synth_apply_command(
    dataset: Path = typer.Argument(..., help="The dataset `aiapp eval synth` wrote."),
    output: Path = typer.Option(..., "-o", "--output", help="Where the reviewed dataset goes."),
    review: Path | None = typer.Option(
        None, "--review", help="Review file (default: <dataset>.review.jsonl)."
    ),
    allow_pending: bool = typer.Option(False, "--allow-pending", help="Leave out rows nobody reviewed."),
) -> None:
    """Keep the rows a reviewer accepted (verdict: accept) in a new dataset."""
    from aiapp.evals._synth import apply_review, review_path_for

    outcome = apply_review(dataset, review or review_path_for(dataset), output, allow_pending=allow_pending)
    typer.echo(
        f"{len(outcome.accepted)} accepted, {len(outcome.rejected)} rejected, {len(outcome.pending)} pending "
        f"→ {output}"
    )
