"""``aiapp eval`` on a suite with ``perturb:``: a robustness table and JSON with drops and CIs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from aiapp.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evals"))  # test_perturb:fragile

from test_perturb import ROWS

runner = CliRunner()


def test_eval_prints_and_writes_the_robustness_report(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    suite = tmp_path / "robust.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "dataset": {"path": "data.jsonl"},
                "target": {"callable": "test_perturb:fragile"},
                "scorers": ["exact_match"],
                "perturb": ["typos", "case", "injected_instruction"],
            }
        )
    )
    reports = tmp_path / "reports"
    result = runner.invoke(
        app, ["eval", str(suite), "-q", "--report-dir", str(reports)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "robustness" in result.output and "injection_resisted" in result.output
    result = runner.invoke(
        app, ["eval", str(suite), "--json", "--report-dir", str(reports)], catch_exceptions=False
    )
    data = json.loads(result.output)
    typos = data["robustness"]["typos"]["metrics"]["exact_match"]
    assert (
        typos["drop"]["mean"] > 0 and typos["drop"]["low"] is not None and typos["drop"]["high"] is not None
    )
    assert typos["robustness"]["low"] is not None
    assert data["robustness"]["case"]["metrics"]["exact_match"]["drop"]["mean"] == 0.0
    assert data["metrics"]["exact_match"]["n"] == len(ROWS)  # perturbed forms stay out of the estimate
    written = json.loads(Path(data["reports"]["robustness"]).read_text())
    assert written == data["robustness"]
