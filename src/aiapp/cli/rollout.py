"""``aiapp rollout``: splits, shadows and canaries in production — status, canary check, report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from aiapp.cli._common import ConfigOption, console, print_json

rollout_app = typer.Typer(
    help="Safe rollout: live arms and shadows (status, canary check, offline report).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the command group to ``app``."""
    app.add_typer(rollout_app, name="rollout")


def parse_since(text: str | None, *, now: float | None = None) -> float | None:
    """``30m``, ``12h``, ``1d``, ``2w`` (or plain seconds) ago as a unix time; ``None`` for all time.

    Raises:
        InputError: an unreadable duration.
    """
    from aiapp.errors import InputError

    if text is None or not text.strip():
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    raw = text.strip().lower()
    unit = raw[-1] if raw[-1] in units else "s"
    number = raw[:-1] if raw[-1] in units else raw
    try:
        value = float(number)
    except ValueError:
        raise InputError(f"--since takes a duration like 30m, 12h, 1d or 2w, not {text!r}") from None
    if value < 0:
        raise InputError(f"--since must not be negative, got {text!r}")
    return (now if now is not None else time.time()) - value * units[unit]


@rollout_app.command("report")
def report(
    label: str | None = typer.Option(None, "--label", "-l", help="Only this label's experiments."),
    since: str | None = typer.Option("1d", "--since", help="How far back: 30m, 12h, 1d, 2w ('' for all)."),
    scorer: list[str] = typer.Option(
        [], "--scorer", "-s", help="A scorer to compare with (repeatable); default: judge_pairwise."
    ),
    judge: str = typer.Option("judge", "--judge", help="The pairwise judge's route."),
    min_pairs: int = typer.Option(5, "--min-pairs", help="Fewer scored pairs than this is inconclusive."),
    write_dataset: Path | None = typer.Option(
        None, "--write-dataset", help="Also write the pairs as a JSONL eval dataset."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Compare arms (same question, two arms) and primary-vs-shadow pairs with the eval scorers.

    Each metric gets a 95% interval and a verdict: better, worse or inconclusive. Exit code 1 when
    any experiment's candidate is worse.
    """
    from aiapp.cli._common import gateway as load_gateway
    from aiapp.errors import InputError
    from aiapp.evals import build_scorer, rollout_report, write_pairs_dataset

    gw = load_gateway(config)
    store = gw.tracer.store
    if store is None or not gw.settings.traces_path.exists():
        raise InputError("no traces to compare: tracing is off or nothing has been served yet")
    scorers = [build_scorer(name, gateway=gw) for name in scorer] if scorer else None
    result = rollout_report(
        store,
        gateway=gw,
        scorers=scorers,
        label=label,
        since=parse_since(since),
        judge=judge,
        min_pairs=min_pairs,
    )
    if write_dataset is not None:
        rows = write_pairs_dataset(result, write_dataset)
        typer.secho(f"wrote {rows} pair(s) to {write_dataset}", err=True)
    if as_json:
        print_json(result.as_dict())
    else:
        from rich.markdown import Markdown

        console().print(Markdown(result.markdown()))
    if any(c.verdict == "worse" for c in result.comparisons):
        raise typer.Exit(1)


@rollout_app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Every split label: its arms, weights in force (after automatic rollbacks), canary and shadow."""
    from aiapp.config import load_settings
    from aiapp.prompts import PromptRegistry

    settings = load_settings(config)
    registry = PromptRegistry.from_settings(settings)
    rows: list[dict[str, Any]] = []
    for entry in registry.entries():
        if not entry.is_split:
            continue
        overrides = registry.overrides(entry)
        rows.append(
            {
                "experiment": entry.experiment,
                "configured": {a.tag: a.weight for a in entry.arms},
                "serving": {f"v{v}": round(w * 100, 2) for v, w in entry.weights(overrides)},
                "canary": entry.canary.arm if entry.canary else None,
                "rolled_back": registry.state.details(entry.experiment).get("arms", {}) if overrides else {},
                "shadow": entry.shadow.model_dump(exclude_none=True) if entry.shadow else None,
                "where": f"{entry.path}:{entry.line}",
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no label splits traffic (prompts/labels.yaml)")
        return
    for row in rows:
        typer.secho(f"{row['experiment']}  ({row['where']})", bold=True)
        typer.echo(f"  configured {row['configured']}  serving % {row['serving']}")
        if row["canary"]:
            typer.echo(f"  canary {row['canary']}")
        for arm, info in row["rolled_back"].items():
            typer.secho(f"  rolled back {arm}: {info.get('reason')}", fg="red")
        if row["shadow"]:
            typer.echo(f"  shadow {row['shadow']}")


@rollout_app.command("check")
def check(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Check every canary against its control now; roll back the ones that regressed."""
    from aiapp.cli._common import gateway as load_gateway
    from aiapp.rollout import Rollout

    rollout = Rollout(load_gateway(config))
    made = rollout.check()
    rows = [
        {
            "experiment": r.experiment,
            "arm": r.arm,
            "control": r.control,
            "metric": r.regression.metric,
            "canary": r.regression.canary,
            "control_value": r.regression.control,
            "trace_id": r.trace_id,
        }
        for r in made
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no canary regressed")
    for row in rows:
        typer.secho(
            f"rolled back {row['experiment']} {row['arm']}: {row['metric']} {row['canary']:.3f} vs "
            f"{row['control_value']:.3f} on {row['control']} (trace {row['trace_id']})",
            fg="red",
        )
