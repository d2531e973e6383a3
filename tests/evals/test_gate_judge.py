"""The gate trusts an LLM judge only once people agree with it (ratings under review/<suite>/)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiapp import evals
from aiapp.config import Settings
from aiapp.evals._review import Queue, create_queue, items_from_run, save_rating
from aiapp.evals.scorers._human import Rubric
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel

ROWS = [{"id": f"q{n}", "question": f"question number {n}", "answer": f"answer {n}"} for n in range(1, 7)]
#: The judge's grade per case: low everywhere, so a judge that may gate fails the floor below.
JUDGE = {"q1": 1, "q2": 2, "q3": 1, "q4": 3, "q5": 2, "q6": 1}


def _judge_reply(messages: Any, options: Any) -> str:
    text = " ".join(str(m.content) for m in messages)
    case = next(c for c in JUDGE if f"question number {c[1:]}" in text)
    return json.dumps({"reasoning": "graded", "score": JUDGE[case]})


def _gateway(home: Path) -> Gateway:
    settings = Settings()
    settings.home = home
    return Gateway(settings, models={"judge": FakeModel(default=_judge_reply)})


@pytest.fixture
def judged_suite(make_suite: Callable[..., Path], tmp_path: Path) -> Path:
    evals_dir = tmp_path / "evals"
    evals_dir.mkdir()
    suite = make_suite(
        rows=ROWS,
        name="judged",
        scorers=[{"judge_rubric": {"criteria": "Answers the question.", "min_agreement": 0.6}}],
        gate={"metrics": {"judge_rubric": {"min": 0.8}}},
    )
    moved = evals_dir / suite.name
    suite.rename(moved)
    (tmp_path / "data.jsonl").rename(evals_dir / "data.jsonl")
    return moved


def _run(suite: Path, home: Path) -> tuple[evals.Prepared, evals.RunResult]:
    prepared = evals.prepare(suite, _gateway(home))
    return prepared, evals.run(prepared)


def _rate(root: Path, result: evals.RunResult, grades: dict[str, dict[str, int]]) -> None:
    rubric = Rubric(criteria="Answers the question.")
    create_queue(
        root,
        Queue(name="judged", source="suite", suite="judged", rubric=rubric),
        items_from_run(result.iter_rows()),
    )
    for rater, scores in grades.items():
        for case, score in scores.items():
            save_rating(root, "judged", rater, case, score)


def test_a_judge_nobody_validated_is_reported_but_cannot_fail_the_gate(
    judged_suite: Path, aiapp_home: Path
) -> None:
    prepared, result = _run(judged_suite, aiapp_home)
    outcome = evals.gate_run(prepared, result)
    (verdict,) = outcome.metrics
    assert verdict.verdict == "fail" and verdict.advisory  # below the floor, but only advisory
    assert outcome.verdict == "pass" and outcome.exit_code == 0
    assert "not validated: no human ratings in review/judged/" in verdict.reason
    assert "cannot fail the gate" in verdict.reason
    assert outcome.judges["judge_rubric"].may_gate is False


def test_ratings_that_disagree_with_the_judge_keep_it_advisory(judged_suite: Path, aiapp_home: Path) -> None:
    prepared, result = _run(judged_suite, aiapp_home)
    # People think these answers are good; the judge graded them poorly.
    opposite = {case: 6 - grade for case, grade in JUDGE.items()}
    _rate(judged_suite.parent.parent, result, {"alice": opposite, "bob": opposite})
    outcome = evals.gate_run(prepared, result)
    (verdict,) = outcome.metrics
    check = outcome.judges["judge_rubric"]
    assert check.agreement is not None and check.agreement.value is not None and check.agreement.value < 0.6
    assert check.agreement.items == 6
    assert verdict.advisory and outcome.verdict == "pass"
    assert "not validated: agreement with humans" in verdict.reason and "< 0.6" in verdict.reason
    md = evals.markdown(result, outcome)
    assert "(advisory)" in md and "not validated" in md


def test_ratings_that_agree_with_the_judge_let_it_gate(judged_suite: Path, aiapp_home: Path) -> None:
    prepared, result = _run(judged_suite, aiapp_home)
    near = {case: grade for case, grade in JUDGE.items()}
    _rate(judged_suite.parent.parent, result, {"alice": JUDGE, "bob": {**near, "q4": 2}})
    outcome = evals.gate_run(prepared, result)
    (verdict,) = outcome.metrics
    check = outcome.judges["judge_rubric"]
    assert check.may_gate and check.agreement is not None and check.agreement.value is not None
    assert check.agreement.value >= 0.6
    assert not verdict.advisory and verdict.verdict == "fail"
    assert outcome.verdict == "fail" and outcome.exit_code == 1
    assert "validated: agreement with humans" in verdict.reason


def test_a_judge_without_min_agreement_needs_the_default_bar(
    make_suite: Callable[..., Path], aiapp_home: Path
) -> None:
    suite = make_suite(
        rows=ROWS,
        name="plain",
        scorers=[{"judge_rubric": {"criteria": "Answers the question."}}],
        gate={"metrics": {"judge_rubric": {"min": 0.8}}},
    )
    prepared, result = _run(suite, aiapp_home)
    outcome = evals.gate_run(prepared, result)
    check = outcome.judges["judge_rubric"]
    assert check.min_agreement == 0.6 and not check.may_gate and outcome.verdict == "pass"
