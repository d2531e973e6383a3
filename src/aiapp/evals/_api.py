"""The eval harness's front door: run a suite, gate it, compare two versions of a system."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from aiapp.evals._dataset import load_cases
from aiapp.evals._gate import GateResult, gate
from aiapp.evals._runner import DryRun, ProgressHook, Runner, RunResult
from aiapp.evals._score import Case
from aiapp.evals._stats import PairedDifference, paired_difference
from aiapp.evals._suite import Suite, load_suite
from aiapp.evals._targets import Target, build_target
from aiapp.evals.scorers._base import Scorer, build_scorer
from aiapp.gateway import Gateway, run_sync


@dataclass
class Prepared:
    """A suite ready to run: its cases, target and scorers."""

    suite: Suite
    cases: list[Case]
    target: Target
    scorers: list[Scorer]
    runner: Runner


def with_override(suite: Suite, ref: str | None) -> Suite:
    """The suite with its target's prompt (``name@version``) or route (anything else) replaced."""
    if not ref:
        return suite
    target = suite.target.model_copy(update={"prompt": ref} if "@" in ref else {"route": ref})
    return suite.model_copy(update={"target": target})


def prepare(
    suite: Suite | Path | str,
    gateway: Gateway,
    *,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    override: str | None = None,
    concurrency: int | None = None,
    fresh: bool = False,
    progress: ProgressHook | None = None,
) -> Prepared:
    """Load cases, build the target and scorers, and set up a resumable runner."""
    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    loaded = with_override(loaded, override)
    cases = load_cases(loaded.dataset, base_dir=loaded.base_dir, limit=limit, sample=sample, seed=seed)
    target = build_target(loaded.target, gateway)
    scorers = [
        build_scorer(s.name, s.params, gateway=gateway, settings=gateway.settings, base_dir=loaded.base_dir)
        for s in loaded.scorers
    ]
    runner = Runner(
        loaded,
        target,
        scorers,
        home=gateway.settings.home,
        concurrency=concurrency,
        progress=progress,
        gateway=gateway,
    )
    if fresh and runner.run_dir.exists():
        shutil.rmtree(runner.run_dir)
    return Prepared(loaded, cases, target, scorers, runner)


def run(prepared: Prepared) -> RunResult:
    """Run a prepared suite (sync; also inside Jupyter, see :func:`~aiapp.gateway.run_sync`)."""
    return run_sync(prepared.runner.arun(prepared.cases))


def dry_run(prepared: Prepared, gateway: Gateway) -> DryRun:
    """Cases, calls and estimated cost, before spending anything."""
    return prepared.runner.dry_run(prepared.cases, price_per_call=_price_per_call(prepared, gateway))


def advisory_metrics(scorers: list[Scorer]) -> set[str]:
    """Metrics whose scorer may not gate (a judge below its human-agreement bar)."""
    return {s.name for s in scorers if getattr(s, "may_gate", True) is False}


def gate_run(prepared: Prepared, result: RunResult) -> GateResult:
    """Apply the suite's gate to a run."""
    return gate(result, prepared.suite, advisory_metrics=advisory_metrics(prepared.scorers))


def compare_runs(
    a: RunResult, b: RunResult, *, confidence: float = 0.95
) -> dict[str, PairedDifference | None]:
    """Per-metric paired differences ``b − a`` on shared cases."""
    metrics = sorted(set(a.estimates) | set(b.estimates))
    return {m: paired_difference(a.case_values(m), b.case_values(m), confidence=confidence) for m in metrics}


def _price_per_call(prepared: Prepared, gateway: Gateway) -> float | None:
    route = prepared.target.route or gateway.settings.default_route
    try:
        config = gateway.route_config(route)
    except Exception:
        return None
    price = gateway.prices.price(config.deployments[0].model)
    if price is None:
        return None
    # A rough per-call estimate: ~1,500 prompt tokens (question + retrieved context) and ~300 out.
    return price.cost(1500, 300)
