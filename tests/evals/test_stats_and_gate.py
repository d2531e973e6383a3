"""Statistics and the gate: intervals, paired differences, pass/fail/inconclusive."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiapp import evals
from aiapp.config import Settings
from aiapp.evals import bootstrap_mean, estimate, paired_difference
from aiapp.gateway import Gateway


def gateway(home: Path) -> Gateway:
    settings = Settings()
    settings.home = home
    return Gateway(settings)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_n() -> None:
    small = [0, 1] * 5
    large = [0, 1] * 200
    lo_s, hi_s = bootstrap_mean(small)
    lo_l, hi_l = bootstrap_mean(large)
    assert lo_s < 0.5 < hi_s and lo_l < 0.5 < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3


def test_estimate_averages_repeats_per_case_first() -> None:
    est = estimate({"a": [1.0, 0.0], "b": [1.0, 1.0]})
    assert est.mean == 0.75 and est.n == 2 and est.case_std == 0.25


def test_paired_difference_and_win_loss_tie() -> None:
    a = {"x": 0.0, "y": 1.0, "z": 0.5, "only_a": 1.0}
    b = {"x": 1.0, "y": 1.0, "z": 0.0, "only_b": 0.0}
    d = paired_difference(a, b)
    assert d is not None and d.n == 3
    assert (d.wins, d.losses, d.ties) == (1, 1, 1)
    assert abs(d.mean - (1.0 + 0.0 - 0.5) / 3) < 1e-9


def gated(make_suite: Callable[..., Path], target: str, **bars: dict[str, float]) -> Path:
    return make_suite(target=target, gate={"metrics": bars})


def test_gate_passes_against_its_own_baseline(make_suite: Callable[..., Path], aiapp_home: Path) -> None:
    path = gated(make_suite, "fake_targets:oracle", exact_match={"max_drop": 0.05})
    prepared = evals.prepare(path, gateway(aiapp_home))
    result = evals.run(prepared)
    assert evals.gate_run(prepared, result).verdict == "inconclusive"  # no baseline yet
    evals.write_baseline(result, prepared.suite)
    verdict = evals.gate_run(prepared, result)
    assert verdict.verdict == "pass" and verdict.exit_code == 0


def test_a_clear_regression_fails_and_says_by_how_much(
    make_suite: Callable[..., Path], aiapp_home: Path, tmp_path: Path
) -> None:
    rows = [{"id": f"c{i}", "question": "2+2", "answer": "4"} for i in range(30)]
    good = make_suite(
        target="fake_targets:oracle", rows=rows, gate={"metrics": {"exact_match": {"max_drop": 0.05}}}
    )
    prepared = evals.prepare(good, gateway(aiapp_home))
    evals.write_baseline(evals.run(prepared), prepared.suite)
    bad = make_suite(
        target="fake_targets:wrong", rows=rows, gate={"metrics": {"exact_match": {"max_drop": 0.05}}}
    )
    prepared = evals.prepare(bad, gateway(aiapp_home))
    result = evals.run(prepared)
    verdict = evals.gate_run(prepared, result)
    assert verdict.verdict == "fail" and verdict.exit_code == 1
    [metric] = verdict.metrics
    assert "dropped 1.000" in metric.reason
    md = evals.markdown(result, verdict)
    assert "exact_match" in md and "❌ fail" in md and "-1.000 [-1.000, -1.000]" in md


def test_a_noisy_small_change_is_inconclusive(make_suite: Callable[..., Path], aiapp_home: Path) -> None:
    path = make_suite(target="fake_targets:oracle", gate={"metrics": {"exact_match": {"min": 0.6}}})
    prepared = evals.prepare(path, gateway(aiapp_home))
    result = evals.run(prepared)  # 3/4 correct: the interval over 4 cases straddles 0.6
    verdict = evals.gate_run(prepared, result)
    assert verdict.verdict == "inconclusive" and verdict.exit_code == 3
    assert "straddles the floor 0.6" in verdict.metrics[0].reason


def test_reports_are_written(make_suite: Callable[..., Path], aiapp_home: Path, tmp_path: Path) -> None:
    prepared = evals.prepare(make_suite(), gateway(aiapp_home))
    result = evals.run(prepared)
    paths = evals.write_reports(result, None, tmp_path / "reports")
    html = paths["html"].read_text()
    assert html.index("meaning of life") < html.index("capital of France")  # worst cases first
    assert "<svg" in html
    junit = paths["junit"].read_text()
    assert 'failures="2"' in junit  # q4 fails exact_match and token_f1
    assert paths["json"].exists() and paths["markdown"].read_text().startswith("### Eval `demo`")
