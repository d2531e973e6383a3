"""``aiapp prompts optimize``: search few-shot examples and instructions against a suite; write v<N+1>."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from aiapp.cli._common import ConfigOption, console


def register(prompts_app: typer.Typer) -> None:
    """Add ``optimize`` to the ``prompts`` group."""
    prompts_app.command("optimize")(optimize_command)


def optimize_command(
    name: str = typer.Argument(..., help="The prompt to improve (the version the suite's target uses)."),
    suite: Path = typer.Option(..., "--suite", help="Suite whose target uses the prompt."),
    budget_usd: float = typer.Option(2.0, "--budget-usd", help="Most to spend on evaluations and proposals."),
    trials: int = typer.Option(20, "--trials", help="Most candidates to score on the train split."),
    metric: str | None = typer.Option(
        None, "--metric", help="Metric to improve (default: the first gated one)."
    ),
    holdout: float = typer.Option(0.4, "--holdout", help="Share of cases held out to confirm the winner."),
    max_examples: int = typer.Option(3, "--max-examples", help="Most few-shot examples in one candidate."),
    variants: int = typer.Option(
        3, "--variants", help="Instruction variants to ask the proposer for (0: none)."
    ),
    proposer: str | None = typer.Option(None, "--proposer", help="Route that proposes instructions."),
    seed: int = typer.Option(0, "--seed", help="Seed for the split and the search."),
    no_write: bool = typer.Option(False, "--no-write", help="Search and confirm, but write no file."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Search few-shot examples and instruction variants; write the confirmed winner for review.

    Writes prompts/NAME/v<N+1>.yaml only when the winner beats the current version on the held-out
    split (paired test); labels are never changed. Exit 1 when nothing was confirmed.
    """
    from aiapp.cli._common import gateway
    from aiapp.evals._optimize import optimize

    out = console()
    with gateway(config) as gw:
        result = optimize(
            name,
            suite,
            gw,
            budget_usd=budget_usd,
            trials=trials,
            metric=metric,
            holdout=holdout,
            max_examples=max_examples,
            variants=variants,
            proposer=proposer,
            seed=seed,
            write=not no_write,
            progress=None if as_json else lambda line: out.print(f"[dim]{line}[/dim]"),
        )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        diff = result.difference
        out.print(f"{result.prompt}: {len(result.trials)} trials, ${result.spent_usd:.4f} spent")
        if result.winner is not None:
            out.print(f"  best on train: {result.winner.candidate.describe()} ({result.winner.mean})")
        if diff is not None:
            out.print(
                f"  held-out: {result.heldout_baseline} → {result.heldout_winner}, "
                f"difference {diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] (n={diff.n})"
            )
        if result.written:
            out.print(f"  written for review: {result.written} (labels unchanged; promote it when reviewed)")
        else:
            out.print(f"  nothing written: {result.stopped}")
    if not result.confirmed:
        raise typer.Exit(1)
