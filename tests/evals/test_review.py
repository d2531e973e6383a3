"""Review queues on disk: names, malformed files, ratings that stay diff-friendly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiapp.errors import InputError
from aiapp.evals._review import (
    Queue,
    ReviewItem,
    create_queue,
    judge_validation,
    list_queues,
    load_queue,
    load_ratings,
    ratings_path,
    save_rating,
)
from aiapp.evals.scorers._human import Rubric

RUBRIC = Rubric(criteria="Correct and cites its source.", scale_min=1, scale_max=3)


def _queue(root: Path, n: int = 3) -> None:
    items = [ReviewItem(case_id=f"c{i}", question=f"q{i}", answer=f"a{i}") for i in range(n)]
    create_queue(root, Queue(name="demo", source="traces", rubric=RUBRIC), items)


def test_a_regrade_changes_one_line_and_keeps_queue_order(tmp_path: Path) -> None:
    _queue(tmp_path)
    for key, score in (("c2", 1), ("c0", 3), ("c1", 2)):
        save_rating(tmp_path, "demo", "ann", key, score)
    path = ratings_path(tmp_path, "demo", "ann")
    before = path.read_text().splitlines()
    assert [json.loads(line)["case_id"] for line in before] == ["c0", "c1", "c2"]
    save_rating(tmp_path, "demo", "ann", "c1", 3, "on reflection, fine")
    after = path.read_text().splitlines()
    assert [a != b for a, b in zip(before, after, strict=True)] == [False, True, False]
    assert list_queues(tmp_path) == ["demo"]
    assert [r.rater for r in load_ratings(tmp_path, "demo")] == ["ann"] * 3


def test_bad_grades_names_and_files_are_refused_clearly(tmp_path: Path) -> None:
    _queue(tmp_path)
    with pytest.raises(InputError, match="outside the rubric's scale 1–3"):
        save_rating(tmp_path, "demo", "ann", "c0", 5)
    with pytest.raises(InputError, match="no item 'zz'"):
        save_rating(tmp_path, "demo", "ann", "zz", 2)
    with pytest.raises(InputError, match="rater name"):
        save_rating(tmp_path, "demo", "../evil", "c0", 2)
    with pytest.raises(InputError, match="no such review queue"):
        load_queue(tmp_path, "missing")
    tasks = tmp_path / "review" / "demo" / "tasks.jsonl"
    tasks.write_text(tasks.read_text() + '{"question": "no id"}\n')
    with pytest.raises(InputError, match=r"tasks.jsonl:4"):
        load_queue(tmp_path, "demo")


def test_judge_validation_compares_on_the_unit_interval(tmp_path: Path) -> None:
    _queue(tmp_path)
    for key, score in (("c0", 1), ("c1", 2), ("c2", 3)):
        save_rating(tmp_path, "demo", "ann", key, score)
    ratings = load_ratings(tmp_path, "demo")
    rows = [
        {
            "case_id": f"c{i}",
            "repeat": 0,
            "scores": [{"scorer": "judge_rubric", "value": v, "metadata": {"may_gate": False}}],
        }
        for i, v in enumerate((0.0, 0.5, 1.0))
    ]
    check = judge_validation(rows, ratings, scale=(1, 3))["judge_rubric"]
    assert check.agreement is not None and check.agreement.value == pytest.approx(1.0)
    assert check.may_gate and check.min_agreement == 0.6
