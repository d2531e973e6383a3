"""``aiapp eval``: run eval suites, gate CI on them, compare two versions, write reports.

``aiapp eval [SUITES] [--gate ...]`` runs suites (the ``run`` subcommand is the default);
``aiapp eval synth CORPUS`` writes a synthetic test set and its review file;
``aiapp eval synth-apply DATASET`` keeps the rows a reviewer accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from aiapp.cli._common import ConfigOption, console, gateway


class _DefaultRun(TyperGroup):
    """A group whose default subcommand is ``run``: ``aiapp eval --gate`` is ``aiapp eval run --gate``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_DefaultRun,
    help="Run eval suites (default), write synthetic test sets, apply their review.",
    add_completion=False,
)


def register(app: typer.Typer) -> None:
    """Add the ``eval`` group to ``app``."""
    from aiapp.cli import eval_synth  # noqa: F401 - registers synth and synth-apply on eval_app

    app.add_typer(eval_app, name="eval")

    @eval_app.command("run")
    def eval_command(
        suites: list[Path] = typer.Argument(None, help="Suite files (default: every evals/*.yaml)."),
        gate_flag: bool = typer.Option(
            False, "--gate", help="Apply each suite's gate; exit 0 pass, 1 fail, 3 inconclusive."
        ),
        update_baseline: bool = typer.Option(
            False, "--update-baseline", help="Write this run as the suites' baseline."
        ),
        compare: tuple[str, str] | None = typer.Option(
            None,
            "--compare",
            help="Run two versions on the same cases: prompt refs (name@v1) or route names.",
        ),
        limit: int | None = typer.Option(None, "--limit", help="Only the first N cases."),
        sample: int | None = typer.Option(None, "--sample", help="A reproducible random sample of N cases."),
        seed: int = typer.Option(0, "--seed", help="Seed for --sample."),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Count cases, calls and estimated cost; call nothing."
        ),
        fresh: bool = typer.Option(False, "--fresh", help="Discard stored results instead of resuming."),
        concurrency: int | None = typer.Option(
            None, "--concurrency", help="Cases in flight (default: the suite's)."
        ),
        report_dir: Path | None = typer.Option(
            None, "--report-dir", help="Where reports go (default $AIAPP_HOME/reports)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON summaries instead of tables."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        config: str | None = ConfigOption,
    ) -> None:
        """Run eval suites: dataset × target × scorers, with intervals, a gate and reports."""
        from aiapp import evals
        from aiapp.errors import InputError

        paths = list(suites or []) or evals.discover_suites("evals")
        if not paths:
            raise InputError("no suites: pass suite files or add evals/*.yaml")
        worst = 0
        summaries: list[dict[str, Any]] = []
        with gateway(config) as gw:
            out_dir = report_dir or gw.settings.home / "reports"
            for path in paths:
                if compare:
                    summaries.append(
                        _compare(gw, path, compare, limit, sample, seed, concurrency, fresh, quiet, as_json)
                    )
                    continue
                with _progress(quiet or as_json) as progress:
                    prepared = evals.prepare(
                        path,
                        gw,
                        limit=limit,
                        sample=sample,
                        seed=seed,
                        concurrency=concurrency,
                        fresh=fresh,
                        progress=progress,
                    )
                    if dry_run:
                        plan = evals.dry_run(prepared, gw)
                        summaries.append({"suite": prepared.suite.name, "dry_run": plan.__dict__})
                        if not as_json:
                            cost = (
                                "unknown"
                                if plan.estimated_cost_usd is None
                                else f"${plan.estimated_cost_usd:.4f}"
                            )
                            typer.echo(
                                f"{prepared.suite.name}: {plan.cases} cases × {plan.repeats} repeats → "
                                f"{plan.target_calls} target calls ({plan.already_done} already done), "
                                f"{plan.scorer_model_calls} judge calls, estimated cost {cost}"
                            )
                        continue
                    result = evals.run(prepared)
                if update_baseline:
                    written = evals.write_baseline(result, prepared.suite)
                    if not as_json:
                        typer.echo(f"baseline written: {written}")
                verdict = evals.gate_run(prepared, result) if gate_flag else None
                paths_written = evals.write_reports(result, verdict, out_dir / prepared.suite.name)
                markdown = evals.markdown(result, verdict)
                from aiapp.evals._report import write_step_summary

                write_step_summary(markdown)
                summary = evals.summary_dict(result, verdict)
                summary["reports"] = {k: str(v) for k, v in paths_written.items()}
                if result.robustness or result.perturb_skipped:
                    from aiapp.evals._report import robustness_dict

                    summary["robustness"] = robustness_dict(result)
                    robustness_path = out_dir / prepared.suite.name / "robustness.json"
                    robustness_path.parent.mkdir(parents=True, exist_ok=True)
                    robustness_path.write_text(json.dumps(summary["robustness"], indent=2) + "\n")
                    summary["reports"]["robustness"] = str(robustness_path)
                summaries.append(summary)
                if not as_json:
                    _print_result(result, verdict, paths_written)
                    if result.robustness or result.perturb_skipped:
                        _print_robustness(result)
                if verdict is not None:
                    worst = _worse(worst, verdict.exit_code)
        if as_json:
            typer.echo(json.dumps(summaries if len(summaries) != 1 else summaries[0], indent=2, default=str))
        if worst:
            raise typer.Exit(worst)


def _worse(a: int, b: int) -> int:
    # fail (1) outranks inconclusive (3), which outranks pass (0).
    rank = {0: 0, 3: 1, 1: 2}
    return a if rank.get(a, 2) >= rank.get(b, 2) else b


class _progress:
    """A rich progress bar fed by the runner's (done, total) hook."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if self.quiet:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress("eval", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("cases", total=None)

        def hook(done: int, total: int) -> None:
            self._bar.update(self._task, completed=done, total=total)

        return hook

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_result(result: Any, verdict: Any, paths: dict[str, Path]) -> None:
    from rich.table import Table

    table = Table(title=f"{result.suite} — {result.target}")
    for column in ("metric", "mean", "95% CI", "n", "unscored", "pass rate"):
        table.add_column(column)
    for name, est in sorted(result.estimates.items()):
        interval = "—" if est.low is None else f"[{est.low:.3f}, {est.high:.3f}]"
        mean = "—" if est.mean is None else f"{est.mean:.3f}"
        rate = "—" if est.pass_rate is None else f"{est.pass_rate:.0%}"
        table.add_row(name, mean, interval, str(est.n), str(est.unscored), rate)
    out = console()
    out.print(table)
    for name, values in sorted(result.metrics.items()):
        for reason, count in sorted(values.reasons.items(), key=lambda kv: -kv[1])[:2]:
            out.print(f"  [dim]{name}: {count} unscored — {reason}[/dim]")
    extra = f" ({result.resumed} resumed)" if result.resumed else ""
    cost = "unknown" if result.cost_usd is None else f"${result.cost_usd:.4f}"
    out.print(
        f"  {result.samples} samples{extra}, {result.errors} errors, cost {cost}, {result.wall_s:.1f} s"
    )
    if verdict is not None:
        colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[verdict.verdict]
        out.print(f"  gate: [{colour}]{verdict.verdict}[/{colour}]")
        for m in verdict.metrics:
            out.print(f"    {m.metric}: {m.verdict}{' (advisory)' if m.advisory else ''} — {m.reason}")
    out.print(f"  report: {paths['html']}")


def _print_robustness(result: Any) -> None:
    from rich.table import Table

    from aiapp.evals._report import ROBUSTNESS_COLUMNS, robustness_rows

    table = Table(title=f"{result.suite} — robustness (original vs perturbed, paired per case)")
    for column in ROBUSTNESS_COLUMNS:
        table.add_column(column)
    for row in robustness_rows(result):
        table.add_row(*row)
    out = console()
    out.print(table)
    for kind, reasons in sorted(result.perturb_skipped.items()):
        for reason, count in sorted(reasons.items()):
            out.print(f"  [dim]{kind}: {count} cases not perturbed — {reason}[/dim]")


def _compare(
    gw: Any,
    path: Path,
    refs: tuple[str, str],
    limit: int | None,
    sample: int | None,
    seed: int,
    concurrency: int | None,
    fresh: bool,
    quiet: bool,
    as_json: bool,
) -> dict[str, Any]:
    from aiapp import evals

    results = []
    for ref in refs:
        with _progress(quiet or as_json) as progress:
            prepared = evals.prepare(
                path,
                gw,
                limit=limit,
                sample=sample,
                seed=seed,
                override=ref,
                concurrency=concurrency,
                fresh=fresh,
                progress=progress,
            )
            results.append(evals.run(prepared))
    diffs = evals.compare_runs(results[0], results[1])
    text = evals.compare_markdown(results[0].suite, refs[0], refs[1], diffs)
    from aiapp.evals._report import write_step_summary

    write_step_summary(text)
    if not as_json:
        typer.echo(text)
    return {
        "suite": results[0].suite,
        "a": refs[0],
        "b": refs[1],
        "a_metrics": {k: v.as_dict() for k, v in results[0].estimates.items()},
        "b_metrics": {k: v.as_dict() for k, v in results[1].estimates.items()},
        "difference": {k: None if d is None else d.as_dict() for k, d in diffs.items()},
    }
