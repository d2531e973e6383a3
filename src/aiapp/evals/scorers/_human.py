"""Human rubric: tasks written out for raters, their scores read back, merged and checked for agreement.

The loop::

    export_rubric_tasks(samples, rubric, "review/tasks.csv")      # one row per case; raters fill `score`
    ratings = import_ratings("review/alice.csv") + import_ratings("review/bob.csv")
    inter_rater_agreement(ratings)                                 # do the raters agree with each other?
    humans = merge(ratings)                                        # per-case human score (mean by default)
    agreement = judge_human_agreement(judge_scores, humans)        # does the LLM judge agree with them?
    judge.set_agreement(agreement.value, method=agreement.method)  # judge.may_gate now reflects it

In a suite, ``human_rubric: {ratings: [review/alice.csv, review/bob.csv]}`` scores each case from
the imported ratings, and a case nobody rated yet is unscored ("awaiting human rating").

Cases are keyed by :func:`task_key`: the case id, plus ``#<repeat>`` for repeats after the first.

Review queues (``aiapp review create``, graded in ``aiapp ui``) keep one JSONL file per rater under
``review/<queue>/ratings/<rater>.jsonl`` in the repository (:mod:`aiapp.evals._review`); those files
import with :func:`import_ratings` (the file name is the rater), and a suite's queue validates its
LLM judges for the gate.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aiapp._files import atomic_write
from aiapp.errors import ConfigError, InputError
from aiapp.evals._score import Sample, Score
from aiapp.evals.scorers._agreement import Agreement, Level, Weights, measure
from aiapp.evals.scorers._base import Scorer, scorer
from aiapp.evals.scorers._text import references

TASK_COLUMNS = (
    "case_id",
    "repeat",
    "question",
    "answer",
    "context",
    "reference",
    "rubric",
    "rater",
    "score",
    "comment",
)
MergeMethod = Literal["mean", "median", "majority"]


def task_key(case_id: str, repeat: int = 0) -> str:
    """How ratings, human scores and judge scores name one rated output."""
    return case_id if repeat == 0 else f"{case_id}#{repeat}"


class Rubric(BaseModel):
    """What raters grade against.

    Attributes:
        criteria: What a good answer does, in words.
        levels: Optional description of each score level.
        scale_min: Lowest score.
        scale_max: Highest score.
    """

    model_config = ConfigDict(extra="forbid")

    criteria: str
    levels: dict[int, str] = Field(default_factory=dict)
    scale_min: int = 1
    scale_max: int = 5

    def text(self) -> str:
        """The rubric as raters read it."""
        lines = [self.criteria.strip(), f"Score from {self.scale_min} to {self.scale_max}."]
        lines += [f"{level}: {self.levels[level]}" for level in sorted(self.levels)]
        return "\n".join(lines)


class Rating(BaseModel):
    """One rater's score for one case (a row of an imported ratings file)."""

    model_config = ConfigDict(extra="forbid")

    rater: str
    case_id: str
    score: float
    repeat: int = 0
    comment: str = ""

    @property
    def key(self) -> str:
        """The rated output's :func:`task_key`."""
        return task_key(self.case_id, self.repeat)


class HumanScore(BaseModel):
    """The merged human score of one case.

    Attributes:
        key: The case's :func:`task_key`.
        value: The merged score on the rubric's scale.
        n: How many raters scored it.
        ratings: Each rater's score.
        spread: Highest minus lowest rating.
    """

    key: str
    value: float
    n: int
    ratings: dict[str, float]
    spread: float


# -- export -------------------------------------------------------------------------------------


def _task_row(sample: Sample, rubric_text: str) -> dict[str, Any]:
    context = "\n\n".join(
        f"[{n}] {hit.source}\n{hit.text.strip()}".strip() for n, hit in enumerate(sample.output.hits, start=1)
    )
    return {
        "case_id": sample.case.id,
        "repeat": sample.repeat,
        "question": sample.case.question,
        "answer": sample.output.text
        if sample.output.error is None
        else f"(target failed: {sample.output.error})",
        "context": context,
        "reference": "\n".join(references(sample.case.expected)),
        "rubric": rubric_text,
        "rater": "",
        "score": "",
        "comment": "",
    }


def export_rubric_tasks(
    samples: Iterable[Sample],
    rubric: Rubric | str,
    path: str | Path,
    *,
    format: Literal["jsonl", "csv"] | None = None,
) -> Path:
    """Write one rating task per sample for human raters (JSONL or CSV), atomically.

    Columns: ``case_id, repeat, question, answer, context, reference, rubric, rater, score, comment``;
    raters fill ``rater``, ``score`` and optionally ``comment``.

    Args:
        samples: The cases and outputs to rate.
        rubric: The rubric (criteria text or a :class:`Rubric`).
        path: Where to write; the format follows the suffix unless ``format`` is given.
        format: ``jsonl`` or ``csv``.

    Returns:
        The path written.
    """
    target = Path(path)
    kind = format or _format_of(target)
    text = (rubric if isinstance(rubric, Rubric) else Rubric(criteria=rubric)).text()
    rows = [_task_row(sample, text) for sample in samples]
    buffer = io.StringIO(newline="")
    if kind == "csv":
        writer = csv.DictWriter(buffer, fieldnames=TASK_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            buffer.write(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write(target, buffer.getvalue())
    return target


def _format_of(path: Path) -> Literal["jsonl", "csv"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise InputError(f"{path}: unknown ratings format {suffix!r}: use .jsonl or .csv")


# -- import -------------------------------------------------------------------------------------


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` pairs of a JSONL or CSV file."""
    kind = _format_of(path)
    with path.open(encoding="utf-8", newline="") as handle:
        if kind == "jsonl":
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"{path}:{number}: not valid JSON: {exc.msg} (column {exc.colno})"
                    ) from exc
                if not isinstance(row, dict):
                    raise InputError(
                        f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}"
                    )
                yield number, row
            return
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            return
        missing = [c for c in ("case_id", "score") if c not in reader.fieldnames]
        if missing:
            raise InputError(f"{path}:1: the header lacks column(s) {', '.join(missing)}")
        start = 2
        for row in reader:
            yield start, dict(row)
            start = reader.line_num + 1


def import_ratings(
    path: str | Path, *, rater: str | None = None, scale: tuple[float, float] | None = (1, 5)
) -> list[Rating]:
    """Read raters' scores back from a filled-in task file (JSONL or CSV).

    Rows with an empty ``score`` are tasks not rated yet and are skipped.

    Args:
        path: The file.
        rater: The rater for rows whose ``rater`` column is empty (e.g. one file per rater).
        scale: Allowed ``(lowest, highest)`` score; ``None`` accepts any number.

    Raises:
        InputError: a bad row, naming the file and line: no case id, no rater, a score that is not a
            number or is off the scale, or the same rater rating the same case twice.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: ratings file not found")
    out: list[Rating] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in _rows(file):
        where = f"{file}:{line}"
        raw_score = row.get("score")
        if raw_score is None or (isinstance(raw_score, str) and not raw_score.strip()):
            continue
        case_id = str(row.get("case_id") or "").strip()
        if not case_id:
            raise InputError(f"{where}: missing case_id")
        who = str(row.get("rater") or "").strip() or rater
        if not who:
            raise InputError(f"{where}: missing rater: fill the rater column or pass rater=")
        if isinstance(raw_score, bool):
            raise InputError(f"{where}: score {raw_score!r} is not a number")
        try:
            value = float(raw_score)
        except (TypeError, ValueError):
            raise InputError(f"{where}: score {raw_score!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise InputError(f"{where}: score {raw_score!r} is not a finite number")
        if scale is not None and not scale[0] <= value <= scale[1]:
            raise InputError(f"{where}: score {value:g} is outside the scale {scale[0]:g}–{scale[1]:g}")
        try:
            repeat = int(row.get("repeat") or 0)
        except (TypeError, ValueError):
            raise InputError(f"{where}: repeat {row.get('repeat')!r} is not an integer") from None
        rating = Rating(
            rater=who, case_id=case_id, score=value, repeat=repeat, comment=str(row.get("comment") or "")
        )
        if (who, rating.key) in seen:
            raise InputError(
                f"{where}: rater {who!r} already rated case {rating.key!r} on line {seen[(who, rating.key)]}"
            )
        seen[(who, rating.key)] = line
        out.append(rating)
    return out


# -- merging and agreement ----------------------------------------------------------------------


def merge(ratings: Iterable[Rating], *, method: MergeMethod = "mean") -> dict[str, HumanScore]:
    """Per-case human scores from individual ratings.

    Args:
        ratings: Ratings from any number of raters.
        method: ``mean``, ``median`` or ``majority`` (the most common score; a tie goes to the one
            closest to the mean, then the lower).
    """
    by_key: dict[str, dict[str, float]] = {}
    for rating in ratings:
        by_key.setdefault(rating.key, {})[rating.rater] = rating.score
    out: dict[str, HumanScore] = {}
    for key, scores in by_key.items():
        values = list(scores.values())
        if method == "mean":
            value = statistics.fmean(values)
        elif method == "median":
            value = float(statistics.median(values))
        elif method == "majority":
            counts = Counter(values)
            top = max(counts.values())
            mean = statistics.fmean(values)
            value = min((v for v, c in counts.items() if c == top), key=lambda v: (abs(v - mean), v))
        else:
            raise InputError(f"merge method must be mean, median or majority, not {method!r}")
        out[key] = HumanScore(
            key=key, value=value, n=len(values), ratings=dict(scores), spread=max(values) - min(values)
        )
    return out


def ratings_matrix(ratings: Iterable[Rating]) -> tuple[list[str], list[str], list[list[float | None]]]:
    """``(raters, keys, matrix)``: a raters × cases matrix with ``None`` where a rater did not rate."""
    items = list(ratings)
    raters = sorted({r.rater for r in items})
    keys = sorted({r.key for r in items})
    row_of = {name: i for i, name in enumerate(raters)}
    col_of = {key: j for j, key in enumerate(keys)}
    matrix: list[list[float | None]] = [[None] * len(keys) for _ in raters]
    for r in items:
        matrix[row_of[r.rater]][col_of[r.key]] = r.score
    return raters, keys, matrix


def inter_rater_agreement(
    ratings: Iterable[Rating],
    *,
    method: Literal["alpha", "kappa"] = "alpha",
    level: Level = "ordinal",
    weights: Weights = "quadratic",
) -> Agreement:
    """How much the raters agree with each other.

    ``alpha`` (default): Krippendorff's α at ``level`` over all raters, missing ratings allowed.
    ``kappa``: Cohen's κ (``weights``) for two raters; the mean pairwise κ for more.
    """
    raters, _, matrix = ratings_matrix(ratings)
    if len(raters) < 2:
        return Agreement(
            f"krippendorff_alpha_{level}" if method == "alpha" else "cohen_kappa",
            None,
            0,
            len(raters),
            reason=f"agreement needs two or more raters, found {len(raters)}",
        )
    return measure(matrix, method=method, level=level, weights=weights)


def _number(value: float | Score | HumanScore) -> float | None:
    if isinstance(value, HumanScore):
        return value.value
    if isinstance(value, Score):
        raw = value.metadata.get("raw_score")
        if isinstance(raw, int | float):
            return float(raw)
        return value.value
    return float(value)


def judge_human_agreement(
    judge_scores: Mapping[str, float | Score],
    human_scores: Mapping[str, float | HumanScore],
    *,
    method: Literal["alpha", "kappa"] = "alpha",
    level: Level = "ordinal",
    weights: Weights = "quadratic",
) -> Agreement:
    """Agreement between a judge and the (merged) human scores on the cases both scored.

    Both sides must use the same scale: a judge :class:`Score` contributes its ``raw_score`` metadata
    (the 1–5 grade of ``judge_rubric``) when present, else its value; unscored cases are left out.

    Args:
        judge_scores: :func:`task_key` → judge score.
        human_scores: :func:`task_key` → human score (see :func:`merge`).
        method: ``alpha`` (Krippendorff, at ``level``) or ``kappa`` (Cohen, ``weights``).
    """
    pairs = [
        (_number(judge_scores[k]), _number(human_scores[k]))
        for k in sorted(judge_scores)
        if k in human_scores
    ]
    paired = [(j, h) for j, h in pairs if j is not None and h is not None]
    if len(paired) < 2:
        return Agreement(
            f"krippendorff_alpha_{level}" if method == "alpha" else "cohen_kappa",
            None,
            len(paired),
            2,
            reason=f"judge-vs-human agreement needs two or more cases scored by both, found {len(paired)}",
        )
    matrix: list[list[float | None]] = [[j for j, _ in paired], [h for _, h in paired]]
    return measure(matrix, method=method, level=level, weights=weights)


# -- the scorer ---------------------------------------------------------------------------------


@scorer("human_rubric")
class HumanRubric(Scorer):
    """Scores each case from imported human ratings; unscored "awaiting human rating" until rated.

    Args:
        ratings: Ratings file(s) filled in by raters (JSONL or CSV, see :func:`import_ratings`).
        scale: The rubric's ``[lowest, highest]`` score.
        threshold: The raw score at or above which a case passes (default 4 of 1–5).
        merge_method: How several raters' scores combine: ``mean``, ``median`` or ``majority``.
        base_dir: Directory relative ratings paths are resolved against (default: the working directory).
        human_scores: Already merged scores (:func:`task_key` → :class:`HumanScore`), instead of files.
    """

    def __init__(
        self,
        *,
        ratings: str | Sequence[str] = (),
        scale: Sequence[float] = (1, 5),
        threshold: float = 4,
        merge_method: MergeMethod = "mean",
        base_dir: str | Path | None = None,
        human_scores: Mapping[str, HumanScore] | None = None,
    ) -> None:
        if len(scale) != 2 or scale[0] >= scale[1]:
            raise ConfigError(f"scale must be [lowest, highest], got {list(scale)}", field="scorers.scale")
        self.low, self.high = float(scale[0]), float(scale[1])
        if not self.low <= threshold <= self.high:
            raise ConfigError(f"threshold {threshold} is outside the scale", field="scorers.threshold")
        root = Path(base_dir) if base_dir is not None else Path.cwd()
        paths = [ratings] if isinstance(ratings, str) else list(ratings)
        self.paths = [p if p.is_absolute() else root / p for p in map(Path, paths)]
        self.raw_threshold = threshold
        self.threshold = (threshold - self.low) / (self.high - self.low)
        self.merge_method = merge_method
        self._scores: dict[str, HumanScore] | None = dict(human_scores) if human_scores is not None else None
        self._agreement: Agreement | None = None
        self._missing: list[str] = []
        self._lock = threading.Lock()  # the runner may score cases from several threads

    def load(self) -> dict[str, HumanScore]:
        """Read and merge the ratings files (once). Missing files are noted, not fatal."""
        with self._lock:
            return self._load()

    def _load(self) -> dict[str, HumanScore]:
        if self._scores is None:
            found: list[Rating] = []
            for path in self.paths:
                if path.is_file():
                    found += import_ratings(path, scale=(self.low, self.high))
                else:
                    self._missing.append(str(path))
            self._scores = merge(found, method=self.merge_method)
            self._agreement = inter_rater_agreement(found) if found else None
        return self._scores

    def score(self, sample: Sample) -> Score:
        """The case's merged human score, normalized to [0, 1]."""
        scores = self.load()
        key = task_key(sample.case.id, sample.repeat)
        human = scores.get(key)
        if human is None:
            where = f" (not found: {', '.join(self._missing)})" if self._missing else ""
            return self.unscored(f"awaiting human rating for case {key!r}{where}", awaiting=True)
        value = (human.value - self.low) / (self.high - self.low)
        metadata: dict[str, Any] = {
            "raw_score": human.value,
            "raters": human.n,
            "ratings": human.ratings,
            "spread": human.spread,
            "merge": self.merge_method,
        }
        if self._agreement is not None:
            metadata["inter_rater_agreement"] = {
                "method": self._agreement.method,
                "value": self._agreement.value,
                "items": self._agreement.items,
                "reason": self._agreement.reason,
            }
        return self.make(value, f"{human.n} rater(s), {self.merge_method} {human.value:g}", **metadata)
