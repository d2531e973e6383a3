"""Human review queues kept in the repository, and the judge validation computed from them.

A queue is a folder under ``review/`` at the repository root, reviewed in pull requests like prompts::

    review/<queue>/queue.json            what is rated: the rubric, where the items came from
    review/<queue>/tasks.jsonl           one item per line (case id, question, answer, context ...)
    review/<queue>/ratings/<rater>.jsonl one line per item the rater graded, sorted by item

A queue built from a suite is named after the suite, so ``review/<suite>/ratings/*.jsonl`` are that
suite's human ratings: :func:`judge_validation` compares each LLM judge of a run with them, and the
gate lets a judge fail CI only when that agreement reaches the judge's ``min_agreement`` (default
:data:`DEFAULT_MIN_AGREEMENT`). A judge nobody validated is reported, never gating.

Saving a rating never loses a rater's earlier work: the rater's file is read, updated and replaced
atomically (:func:`aiapp._files.atomic_write`) under an exclusive lock, so a crash leaves the old or
the new file and two concurrent saves both land.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiapp._files import atomic_write
from aiapp.errors import InputError
from aiapp.evals.scorers._agreement import Agreement
from aiapp.evals.scorers._human import (
    Rating,
    Rubric,
    import_ratings,
    inter_rater_agreement,
    judge_human_agreement,
    merge,
    task_key,
)

#: The folder, at the repository root, that holds review queues.
REVIEW_DIR = "review"
#: The agreement a judge needs with human ratings before it may gate, when it sets no ``min_agreement``.
DEFAULT_MIN_AGREEMENT = 0.6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise InputError(f"{kind} name {name!r} must be letters, digits, '_', '-' or '.' (up to 100)")
    return name


class ReviewItem(BaseModel):
    """One thing to rate: a case's output from an eval run, or a traced answer."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    repeat: int = 0
    question: str = ""
    answer: str = ""
    context: str = ""
    reference: str = ""
    trace_id: str | None = None

    @property
    def key(self) -> str:
        """The item's :func:`~aiapp.evals.scorers._human.task_key`."""
        return task_key(self.case_id, self.repeat)


class Queue(BaseModel):
    """A review queue's header (``queue.json``)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    source: Literal["suite", "traces"]
    suite: str | None = None
    run: str | None = None
    rubric: Rubric
    created_at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def queue_dir(root: Path, name: str) -> Path:
    """``<root>/review/<name>``."""
    return Path(root) / REVIEW_DIR / _check_name("queue", name)


def ratings_path(root: Path, queue: str, rater: str) -> Path:
    """The rater's ratings file of a queue."""
    return queue_dir(root, queue) / "ratings" / f"{_check_name('rater', rater)}.jsonl"


def create_queue(root: Path, queue: Queue, items: Iterable[ReviewItem]) -> Path:
    """Write a queue's header and items (atomically); ratings already there are kept.

    Raises:
        InputError: no items, or two items with the same key.
    """
    folder = queue_dir(root, queue.name)
    rows = list(items)
    if not rows:
        raise InputError(f"queue {queue.name!r} would have no items to rate")
    seen: set[str] = set()
    for item in rows:
        if item.key in seen:
            raise InputError(f"queue {queue.name!r}: item {item.key!r} appears twice")
        seen.add(item.key)
    atomic_write(folder / "queue.json", queue.model_dump_json(indent=2) + "\n")
    atomic_write(
        folder / "tasks.jsonl",
        "".join(json.dumps(item.model_dump(), ensure_ascii=False) + "\n" for item in rows),
    )
    return folder


def items_from_run(rows: Iterable[Mapping[str, Any]]) -> list[ReviewItem]:
    """Review items from an eval run's result rows (``results.jsonl``)."""
    out: list[ReviewItem] = []
    for row in rows:
        output = row.get("output") or {}
        raw_input = row.get("input")
        question = raw_input if isinstance(raw_input, str) else json.dumps(raw_input, ensure_ascii=False)
        hits = output.get("hits") or []
        context = "\n\n".join(
            f"[{n}] {h.get('source', '')}\n{str(h.get('text', '')).strip()}" for n, h in enumerate(hits, 1)
        )
        expected = row.get("expected")
        out.append(
            ReviewItem(
                case_id=str(row["case_id"]),
                repeat=int(row.get("repeat") or 0),
                question=question,
                answer=f"(target failed: {output['error']})"
                if output.get("error")
                else str(output.get("text", "")),
                context=context,
                reference=""
                if expected is None
                else expected
                if isinstance(expected, str)
                else json.dumps(expected),
                trace_id=output.get("trace_id"),
            )
        )
    return out


def list_queues(root: Path) -> list[str]:
    """Names of the queues under ``<root>/review``."""
    base = Path(root) / REVIEW_DIR
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "queue.json").is_file())


def load_queue(root: Path, name: str) -> tuple[Queue, list[ReviewItem]]:
    """A queue's header and items.

    Raises:
        InputError: the queue does not exist, or a file in it is malformed (naming file and line).
    """
    folder = queue_dir(root, name)
    header = folder / "queue.json"
    if not header.is_file():
        raise InputError(f"{header}: no such review queue (create one with `aiapp review create`)")
    try:
        queue = Queue.model_validate_json(header.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise InputError(f"{header}: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from exc
    items: list[ReviewItem] = []
    tasks = folder / "tasks.jsonl"
    if tasks.is_file():
        for number, line in enumerate(tasks.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(ReviewItem.model_validate_json(line))
            except ValidationError as exc:
                raise InputError(f"{tasks}:{number}: {exc.errors()[0]['msg']}") from exc
    return queue, items


def load_ratings(root: Path, name: str, *, queue: Queue | None = None) -> list[Rating]:
    """Every rater's ratings of a queue (one file per rater; the file name is the rater)."""
    folder = queue_dir(root, name) / "ratings"
    if not folder.is_dir():
        return []
    scale = None if queue is None else (float(queue.rubric.scale_min), float(queue.rubric.scale_max))
    out: list[Rating] = []
    for path in sorted(folder.glob("*.jsonl")):
        out += import_ratings(path, rater=path.stem, scale=scale)
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (a sidecar lock file), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: atomic replace alone
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def save_rating(root: Path, name: str, rater: str, key: str, score: float, comment: str = "") -> Rating:
    """Record (or replace) one rater's grade of one item, keeping every other grade in the file.

    Raises:
        InputError: an unknown queue or item, or a score off the rubric's scale.
    """
    queue, items = load_queue(root, name)
    by_key = {item.key: item for item in items}
    item = by_key.get(key)
    if item is None:
        raise InputError(f"queue {name!r} has no item {key!r}")
    low, high = queue.rubric.scale_min, queue.rubric.scale_max
    if not low <= score <= high:
        raise InputError(f"score {score:g} is outside the rubric's scale {low}–{high}")
    path = ratings_path(root, name, rater)
    rating = Rating(rater=rater, case_id=item.case_id, repeat=item.repeat, score=score, comment=comment)
    with _locked(path.with_name(f".{path.name}.lock")):
        current = (
            {r.key: r for r in import_ratings(path, rater=rater, scale=(low, high))} if path.is_file() else {}
        )
        current[key] = rating
        order = {k: i for i, k in enumerate(by_key)}
        lines = [
            json.dumps(
                {"case_id": r.case_id, "repeat": r.repeat, "score": r.score, "comment": r.comment},
                ensure_ascii=False,
            )
            for r in sorted(current.values(), key=lambda r: (order.get(r.key, len(order)), r.key))
        ]
        atomic_write(path, "\n".join(lines) + "\n")
    return rating


# -- judge validation ---------------------------------------------------------------------------


@dataclass
class JudgeCheck:
    """How one LLM judge metric agrees with the human ratings, and whether it may gate.

    Attributes:
        metric: The judge scorer's metric name.
        min_agreement: The bar (the judge's ``min_agreement``, else :data:`DEFAULT_MIN_AGREEMENT`).
        agreement: Judge-vs-human agreement measured from the review files, if any.
        configured: An agreement stated in the suite (the judge's ``agreement`` parameter).
        may_gate: Whether the gate lets this metric fail.
        note: The sentence the gate output shows.
    """

    metric: str
    min_agreement: float
    agreement: Agreement | None = None
    configured: float | None = None
    may_gate: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "metric": self.metric,
            "min_agreement": self.min_agreement,
            "agreement": None if self.agreement is None else self.agreement.value,
            "method": None if self.agreement is None else self.agreement.method,
            "items": 0 if self.agreement is None else self.agreement.items,
            "configured": self.configured,
            "may_gate": self.may_gate,
            "note": self.note,
        }


@dataclass
class _JudgeValues:
    scores: dict[str, float] = field(default_factory=dict)
    min_agreement: float | None = None
    configured: float | None = None


def judge_values(rows: Iterable[Mapping[str, Any]]) -> dict[str, _JudgeValues]:
    """Per judge metric, its per-item scores in [0, 1] from result rows (scores that carry ``may_gate``)."""
    out: dict[str, _JudgeValues] = {}
    for row in rows:
        key = task_key(str(row.get("case_id")), int(row.get("repeat") or 0))
        for score in row.get("scores") or []:
            meta = score.get("metadata") or {}
            if "may_gate" not in meta:
                continue
            values = out.setdefault(str(score.get("scorer")), _JudgeValues())
            if values.min_agreement is None and isinstance(meta.get("min_agreement"), int | float):
                values.min_agreement = float(meta["min_agreement"])
            if values.configured is None and isinstance(meta.get("agreement"), int | float):
                values.configured = float(meta["agreement"])
            value = score.get("value")
            if isinstance(value, int | float):
                values.scores[key] = float(value)
    return out


def judge_validation(
    rows: Iterable[Mapping[str, Any]],
    ratings: list[Rating],
    *,
    scale: tuple[float, float] = (1, 5),
    where: str = "review/",
) -> dict[str, JudgeCheck]:
    """Each judge metric's agreement with the merged human ratings, and whether it may gate.

    Both sides are compared on [0, 1]: the judge's normalized score and the human score rescaled
    from the rubric's ``scale`` (so a 1–5 rubric grade of 4 meets a judge's 0.75).

    A judge may gate when agreement measured from ``ratings`` reaches its bar; with no ratings to
    measure against, when the suite states an ``agreement`` that does; otherwise it is *not
    validated*: reported, never failing the gate.
    """
    low, high = scale
    humans: dict[str, float] = {
        key: (human.value - low) / (high - low) for key, human in (merge(ratings) if ratings else {}).items()
    }
    checks: dict[str, JudgeCheck] = {}
    for metric, values in judge_values(rows).items():
        bar = values.min_agreement if values.min_agreement is not None else DEFAULT_MIN_AGREEMENT
        check = JudgeCheck(metric, bar, configured=values.configured)
        if humans:
            check.agreement = judge_human_agreement(values.scores, humans)
            measured = check.agreement.value
            if measured is None:
                check.note = f"not validated: {check.agreement.reason} ({where})"
            elif measured >= bar:
                check.may_gate = True
                check.note = f"validated: agreement with humans {measured:.2f} ≥ {bar:g} on {check.agreement.items} cases ({where})"
            else:
                check.note = f"not validated: agreement with humans {measured:.2f} < {bar:g} on {check.agreement.items} cases ({where})"
        elif values.configured is not None and values.configured >= bar:
            check.may_gate = True
            check.note = f"validated by the suite's stated agreement {values.configured:.2f} ≥ {bar:g} (no ratings in {where})"
        else:
            check.note = f"not validated: no human ratings in {where} to measure agreement ≥ {bar:g} against"
        checks[metric] = check
    return checks


def rater_agreement(ratings: list[Rating]) -> Agreement:
    """Inter-rater agreement (Krippendorff's α, ordinal) of a queue's ratings."""
    return inter_rater_agreement(ratings)
