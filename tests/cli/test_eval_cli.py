"""``aiapp eval`` end to end on small suites with callable targets."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aiapp.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evals"))  # fake_targets

runner = CliRunner()
ROWS = [{"id": f"c{i}", "question": "2+2", "answer": "4"} for i in range(25)]


@pytest.fixture
def suite(tmp_path: Path) -> Callable[[str], Path]:
    def make(target: str) -> Path:
        (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
        path = tmp_path / "arith.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "dataset": {"path": "data.jsonl"},
                    "target": {"callable": target},
                    "scorers": ["exact_match"],
                    "gate": {"metrics": {"exact_match": {"min": 0.5, "max_drop": 0.1}}},
                }
            )
        )
        return path

    return make


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_gate_passes_then_a_regression_fails(suite: Callable[[str], Path], tmp_path: Path) -> None:
    good = suite("fake_targets:oracle")
    code, out = run(
        "eval", str(good), "--update-baseline", "--gate", "-q", "--report-dir", str(tmp_path / "r")
    )
    assert code == 0, out
    assert "baseline written" in out and (tmp_path / "baselines" / "arith.json").exists()
    code, out = run("eval", str(good), "--gate", "-q", "--report-dir", str(tmp_path / "r"))
    assert code == 0 and "gate: pass" in out
    bad = suite("fake_targets:wrong")
    summary = tmp_path / "step_summary.md"
    result = runner.invoke(
        app,
        ["eval", str(bad), "--gate", "-q", "--report-dir", str(tmp_path / "r")],
        env={"GITHUB_STEP_SUMMARY": str(summary)},
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    assert "exact_match: fail" in result.output
    text = summary.read_text()
    assert "❌ fail" in text and "dropped 1.000" in text
    assert (tmp_path / "r" / "arith" / "arith.html").exists()


def test_json_output_and_dry_run(suite: Callable[[str], Path]) -> None:
    path = suite("fake_targets:oracle")
    code, out = run("eval", str(path), "--dry-run", "--json")
    assert code == 0
    plan = json.loads(out)["dry_run"]
    assert plan["target_calls"] == 25 and plan["estimated_cost_usd"] == 0.0
    code, out = run("eval", str(path), "--json", "--limit", "5")
    data = json.loads(out)
    assert data["metrics"]["exact_match"]["n"] == 5 and data["metrics"]["exact_match"]["mean"] == 1.0


def test_compare_reports_paired_difference(suite: Callable[[str], Path], tmp_path: Path) -> None:
    path = suite("fake_targets:oracle")
    # Compare two routes: the callable target ignores the route, so the difference is zero.
    code, out = run("eval", str(path), "--compare", "local", "local/extractive", "-q")
    assert code == 0, out
    assert "| exact_match | +0.000 |" in out and "25 |" in out


def test_a_missing_suite_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
