"""Human rubric: export tasks, import ratings, merge, and agreement statistics checked by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from aiapp.errors import InputError
from aiapp.evals._score import Case, Output, Sample, Score
from aiapp.evals.scorers._agreement import cohen_kappa, krippendorff_alpha
from aiapp.evals.scorers._base import build_scorer
from aiapp.evals.scorers._human import (
    TASK_COLUMNS,
    Rating,
    Rubric,
    export_rubric_tasks,
    import_ratings,
    inter_rater_agreement,
    judge_human_agreement,
    merge,
)
from aiapp.evals.scorers._judge import RubricJudge
from aiapp.types import Hit

SAMPLES = [
    Sample(
        case=Case(id="q1", input="Which port does Ollama use?", expected="11434"),
        output=Output(
            text="Port 11434 [1].", hits=[Hit(text="Ollama listens on 11434.", source="docs/faq.md")]
        ),
    ),
    Sample(
        case=Case(id="q2", input={"question": "Where are models stored?"}),
        output=Output(text="In ~/.ollama."),
    ),
]
RUBRIC = Rubric(criteria="Answers the question correctly.", levels={1: "wrong", 5: "right"})


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- export ---------------------------------------------------------------------------------------


def test_export_jsonl_tasks(tmp_path: Path) -> None:
    path = export_rubric_tasks(SAMPLES, RUBRIC, tmp_path / "review" / "tasks.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]

    assert [r["case_id"] for r in rows] == ["q1", "q2"]
    assert tuple(rows[0]) == TASK_COLUMNS
    assert rows[0]["context"] == "[1] docs/faq.md\nOllama listens on 11434."
    assert rows[0]["reference"] == "11434" and rows[1]["reference"] == ""
    assert rows[1]["question"] == "Where are models stored?"
    assert "Answers the question correctly." in rows[0]["rubric"] and "5: right" in rows[0]["rubric"]
    assert rows[0]["score"] == "" and rows[0]["rater"] == ""
    assert [p.name for p in path.parent.iterdir()] == ["tasks.jsonl"]  # no temp file left behind


def test_export_csv_round_trips_through_a_spreadsheet(tmp_path: Path) -> None:
    path = export_rubric_tasks(SAMPLES, "Be correct.", tmp_path / "tasks.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0].update(rater="alice", score="4")
    rows[1].update(rater="alice", score="2", comment="vague,\nmulti-line")
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TASK_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    ratings = import_ratings(path)

    assert [(r.rater, r.case_id, r.score) for r in ratings] == [("alice", "q1", 4.0), ("alice", "q2", 2.0)]
    assert ratings[1].comment == "vague,\nmulti-line"


def test_export_rejects_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown ratings format"):
        export_rubric_tasks(SAMPLES, RUBRIC, tmp_path / "tasks.xlsx")


# -- import ---------------------------------------------------------------------------------------


def test_import_skips_unrated_rows_and_takes_a_default_rater(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "bob.jsonl",
        [
            {"case_id": "q1", "score": 5, "rater": ""},
            {"case_id": "q2", "score": ""},
            {"case_id": "q3", "score": 3.5},
        ],
    )
    ratings = import_ratings(path, rater="bob")
    assert [(r.rater, r.case_id, r.score) for r in ratings] == [("bob", "q1", 5.0), ("bob", "q3", 3.5)]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"case_id": "q1", "rater": "a", "score": "good"}, "score 'good' is not a number"),
        ({"case_id": "q1", "rater": "a", "score": 9}, "score 9 is outside the scale 1–5"),
        ({"case_id": "", "rater": "a", "score": 3}, "missing case_id"),
        ({"case_id": "q1", "score": 3}, "missing rater"),
        ({"case_id": "q1", "rater": "a", "score": True}, "is not a number"),
    ],
)
def test_bad_rows_name_the_file_and_line(tmp_path: Path, row: dict[str, object], message: str) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", [{"case_id": "q0", "rater": "a", "score": 1}, row])
    with pytest.raises(InputError, match=message) as info:
        import_ratings(path)
    assert str(info.value).startswith(f"{path}:2:")


def test_bad_json_and_duplicates_name_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"case_id": "q1", "rater": "a", "score": 1}\n\n{"case_id": \n')
    with pytest.raises(InputError, match=r"broken.jsonl:3: not valid JSON"):
        import_ratings(broken)

    twice = write_jsonl(
        tmp_path / "twice.jsonl", [{"case_id": "q1", "rater": "a", "score": s} for s in (1, 2)]
    )
    with pytest.raises(InputError, match=r"twice.jsonl:2: rater 'a' already rated case 'q1' on line 1"):
        import_ratings(twice)


def test_csv_errors_name_the_line_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('case_id,rater,score\nq1,a,4\nq2,a,"lots\nof"\nq3,a,x\n')
    with pytest.raises(InputError, match=r"r.csv:3: score 'lots\\nof' is not a number"):
        import_ratings(path)
    path.write_text("id,rating\nq1,4\n")
    with pytest.raises(InputError, match=r"r.csv:1: the header lacks column\(s\) case_id, score"):
        import_ratings(path)


def test_missing_ratings_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ratings file not found"):
        import_ratings(tmp_path / "nope.csv")


# -- merging ----------------------------------------------------------------------------------------


def ratings(table: dict[str, list[float | None]]) -> list[Rating]:
    """``{rater: [score per case q0, q1, ...]}`` → ratings (``None``: not rated)."""
    return [
        Rating(rater=rater, case_id=f"q{i}", score=s)
        for rater, scores in table.items()
        for i, s in enumerate(scores)
        if s is not None
    ]


def test_merge_mean_median_majority() -> None:
    rs = ratings({"a": [4, 1], "b": [4, 2], "c": [1, 5]})
    assert merge(rs)["q0"].value == 3.0
    assert merge(rs, method="median")["q1"].value == 2.0
    majority = merge(rs, method="majority")
    assert majority["q0"].value == 4.0
    assert majority["q1"].value == 2.0  # 1, 2 and 5 tie once each: the one closest to the mean (2.67)
    assert majority["q0"].n == 3 and majority["q0"].ratings == {"a": 4.0, "b": 4.0, "c": 1.0}
    assert majority["q0"].spread == 3.0


# -- agreement statistics, against hand-computed examples -----------------------------------------


def test_cohen_kappa_textbook_2x2() -> None:
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5·0.6 + 0.5·0.4 = 0.5; κ = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_weighted_kappa_by_hand() -> None:
    # Observed (rows A, cols B) over 6 items: [[1,1,0],[0,1,1],[0,0,2]]; A marginals 1/3 each,
    # B marginals (1, 2, 3)/6, so every row of the expected table is (1, 2, 3)/18.
    # unweighted: p_o = 4/6, p_e = 6/18 → κ = 0.5
    # linear w=|i-j|/2: observed disagreement 1/6, expected 8/18 → κ = 1 - (1/6)/(4/9) = 0.625
    # quadratic w=((i-j)/2)²: observed 1/12, expected 6/18 → κ = 1 - (1/12)/(1/3) = 0.75
    a, b = [1, 1, 2, 2, 3, 3], [1, 2, 2, 3, 3, 3]
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(a, b, weights="linear") == pytest.approx(0.625)
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(0.75)
    assert cohen_kappa(a, a, weights="quadratic") == 1.0


def test_cohen_kappa_undefined_and_bad_input() -> None:
    with pytest.raises(InputError, match="undefined"):
        cohen_kappa([3, 3], [3, 3])
    with pytest.raises(InputError, match="paired"):
        cohen_kappa([1, 2], [1])


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, missing values; published α: nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797.
KRIPPENDORFF_EXAMPLE: list[list[float | None]] = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


@pytest.mark.parametrize(
    ("level", "alpha"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_alpha_worked_example(level: str, alpha: float) -> None:
    assert krippendorff_alpha(KRIPPENDORFF_EXAMPLE, level=level) == pytest.approx(alpha, abs=5e-4)  # type: ignore[arg-type]


def test_krippendorff_alpha_edge_cases() -> None:
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]], level="interval") == 1.0
    with pytest.raises(InputError, match="same value"):
        krippendorff_alpha([[2, 2], [2, 2]])
    with pytest.raises(InputError, match="two or more raters"):
        krippendorff_alpha([[1, None], [None, 2]])


def test_against_scikit_learn_when_present() -> None:
    metrics = pytest.importorskip(
        "sklearn.metrics", reason="scikit-learn not installed (optional cross-check)"
    )
    a = [1, 2, 3, 4, 5, 3, 2, 4, 5, 1, 2, 3]
    b = [1, 3, 3, 5, 4, 3, 1, 4, 5, 2, 2, 2]
    for weights in (None, "linear", "quadratic"):
        assert cohen_kappa(a, b, weights=weights) == pytest.approx(
            metrics.cohen_kappa_score(a, b, weights=weights)
        )  # type: ignore[arg-type]


def test_inter_rater_agreement() -> None:
    rs = ratings({f"r{i}": row for i, row in enumerate(KRIPPENDORFF_EXAMPLE)})
    alpha = inter_rater_agreement(rs, level="nominal")
    assert alpha.method == "krippendorff_alpha_nominal" and alpha.value == pytest.approx(0.743, abs=5e-4)
    assert alpha.items == 11 and alpha.raters == 4  # the unit rated once does not count
    kappa = inter_rater_agreement(ratings({"a": [1, 1, 2, 2, 3, 3], "b": [1, 2, 2, 3, 3, 3]}), method="kappa")
    assert kappa.method == "cohen_kappa_quadratic" and kappa.value == pytest.approx(0.75)
    alone = inter_rater_agreement(ratings({"a": [1, 2]}))
    assert alone.value is None and "two or more raters" in alone.reason


def test_judge_human_agreement_uses_raw_grades_and_skips_unscored() -> None:
    judge = {
        "q0": Score(scorer="judge_rubric", value=0.0, metadata={"raw_score": 1}),
        "q1": Score(scorer="judge_rubric", value=0.5, metadata={"raw_score": 3}),
        "q2": Score(scorer="judge_rubric", value=1.0, metadata={"raw_score": 5}),
        "q3": Score.unscored("judge_rubric", "no judge"),
        "q9": 4.0,
    }
    humans = merge(ratings({"a": [1, 3, 5, 2], "b": [1, 3, 4, 2]}))

    agreement = judge_human_agreement(judge, humans, level="interval")

    assert agreement.items == 3 and agreement.value is not None and agreement.value > 0.9
    too_few = judge_human_agreement({"q0": 1.0}, {"q0": 1.0})
    assert too_few.value is None and "two or more cases" in too_few.reason
    # The measured agreement decides whether the judge may gate.
    judge_scorer = RubricJudge(min_agreement=0.8)
    judge_scorer.set_agreement(agreement.value, method=agreement.method)
    assert judge_scorer.may_gate and agreement.at_least(0.8)


# -- the human_rubric scorer -----------------------------------------------------------------------


def test_human_rubric_scores_from_imported_ratings(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "alice.jsonl", [{"case_id": "q1", "rater": "alice", "score": 5}])
    write_jsonl(tmp_path / "bob.jsonl", [{"case_id": "q1", "rater": "bob", "score": 4}])
    scorer = build_scorer(
        "human_rubric", {"ratings": ["alice.jsonl", "bob.jsonl", "carol.jsonl"]}, base_dir=str(tmp_path)
    )

    rated = scorer.score(SAMPLES[0])
    waiting = scorer.score(SAMPLES[1])

    assert rated.value == pytest.approx(0.875) and rated.passed is True  # mean 4.5 on 1–5
    assert rated.metadata["ratings"] == {"alice": 5.0, "bob": 4.0} and rated.metadata["raters"] == 2
    assert not waiting.scored and waiting.metadata["awaiting"] is True
    assert "awaiting human rating for case 'q2'" in waiting.reason and "carol.jsonl" in waiting.reason
