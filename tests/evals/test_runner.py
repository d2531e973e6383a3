"""The runner: concurrency, resume after a crash, errors and unscored cases, repeats."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import fake_targets

from aiapp import evals
from aiapp.config import Settings
from aiapp.gateway import Gateway


def gateway(home: Path) -> Gateway:
    settings = Settings()
    settings.home = home
    return Gateway(settings)


def test_run_scores_every_case_with_intervals(make_suite: Callable[..., Path], aiapp_home: Path) -> None:
    prepared = evals.prepare(make_suite(), gateway(aiapp_home))
    result = evals.run(prepared)
    em = result.estimates["exact_match"]
    assert (em.mean, em.n, em.unscored) == (0.75, 4, 0)
    assert em.low is not None and em.high is not None and em.low <= 0.75 <= em.high
    assert em.pass_rate == 0.75
    rows = list(result.iter_rows())
    assert {r["case_id"] for r in rows} == {"q1", "q2", "q3", "q4"}
    assert result.results_path.is_relative_to(aiapp_home)


def test_a_rerun_resumes_instead_of_recomputing(make_suite: Callable[..., Path], aiapp_home: Path) -> None:
    suite = make_suite()
    evals.run(evals.prepare(suite, gateway(aiapp_home), limit=2))
    fake_targets.CALLS.clear()
    result = evals.run(evals.prepare(suite, gateway(aiapp_home)))
    assert result.resumed == 2 and result.samples == 4
    assert sorted(fake_targets.CALLS) == ["color of the sky", "meaning of life"]  # only the missing ones ran


def test_a_torn_last_line_from_a_crash_is_dropped_and_redone(
    make_suite: Callable[..., Path], aiapp_home: Path
) -> None:
    suite = make_suite()
    first = evals.run(evals.prepare(suite, gateway(aiapp_home)))
    lines = first.results_path.read_text().splitlines(keepends=True)
    first.results_path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed mid-write
    fake_targets.CALLS.clear()
    again = evals.run(evals.prepare(suite, gateway(aiapp_home)))
    assert again.resumed == 2 and again.samples == 4
    assert len(fake_targets.CALLS) == 2
    assert all(json.loads(line) for line in again.results_path.read_text().splitlines())


def test_changing_the_target_starts_a_fresh_run(make_suite: Callable[..., Path], aiapp_home: Path) -> None:
    a = evals.run(evals.prepare(make_suite(), gateway(aiapp_home)))
    b = evals.run(evals.prepare(make_suite(target="fake_targets:wrong"), gateway(aiapp_home)))
    assert a.run_dir != b.run_dir and b.resumed == 0
    assert b.estimates["exact_match"].mean == 0.0


def test_target_errors_are_unscored_with_a_reason(make_suite: Callable[..., Path], aiapp_home: Path) -> None:
    result = evals.run(evals.prepare(make_suite(target="fake_targets:broken"), gateway(aiapp_home)))
    em = result.estimates["exact_match"]
    assert em.mean is None and em.n == 0 and em.unscored == 4
    assert result.errors == 4
    [reason] = result.metrics["exact_match"].reasons
    assert "target failed: ValueError: target bug" in reason


def test_repeats_and_async_two_argument_targets(make_suite: Callable[..., Path], aiapp_home: Path) -> None:
    suite = make_suite(
        target="fake_targets:slow_oracle", repeats=3, scorers=["exact_match", {"hit_at_k": {"k": 1}}]
    )
    result = evals.run(evals.prepare(suite, gateway(aiapp_home)))
    assert result.samples == 12
    assert result.estimates["exact_match"].n == 4  # cases, not samples
    assert result.estimates["exact_match"].case_std == 0.0
    assert result.estimates["hit_at_k"].mean == 1.0


def test_dry_run_counts_without_calling(make_suite: Callable[..., Path], aiapp_home: Path) -> None:
    fake_targets.CALLS.clear()
    prepared = evals.prepare(make_suite(repeats=2), gateway(aiapp_home))
    plan = evals.dry_run(prepared, gateway(aiapp_home))
    assert (plan.cases, plan.target_calls, plan.already_done) == (4, 8, 0)
    assert plan.estimated_cost_usd == 0.0  # default route is the free local model
    assert fake_targets.CALLS == []
