"""``aiapp rollout report``: live arms and shadows compared offline, on the same inputs.

Two kinds of pairs come out of the trace store:

- **primary vs shadow** — a primary call and the shadow it launched (linked by ``shadow.pair`` /
  ``shadow_of.pair``): the same input answered by the serving version and the candidate;
- **control vs arm** — the same question answered by two arms of a split (different users asked
  it), the most recent answer of each arm per question.

Each pair is scored with the eval harness's scorers: the pairwise judge (asked in both orders)
gives the candidate's preference per pair (+1 better, 0 tie, −1 worse); any per-output scorer
scores both sides and the paired difference is taken. Each metric gets a bootstrap interval
(:func:`aiapp.evals.paired_difference`) and a verdict: **better** when the whole interval is
above 0, **worse** when it is below, **inconclusive** otherwise or with fewer than ``min_pairs``.
The pairs can be written out as an eval dataset (JSONL: ``question``, ``answer`` = the serving
version's reply, ``candidate``) to re-run under ``aiapp eval``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aiapp.evals._score import Case, Output, Sample, Score
from aiapp.evals._stats import bootstrap_mean, paired_difference
from aiapp.evals.scorers import Scorer
from aiapp.evals.scorers._judge import PairwiseJudge
from aiapp.gateway import run_sync
from aiapp.rollout import ArmMetrics, arm_metrics
from aiapp.tracing import TraceStore

if TYPE_CHECKING:
    from aiapp.gateway import Gateway

__all__ = [
    "ArmPair",
    "MetricComparison",
    "PairComparison",
    "RolloutReport",
    "arollout_report",
    "collect_pairs",
    "rollout_report",
    "write_pairs_dataset",
]

Verdict = Literal["better", "worse", "inconclusive"]


@dataclass(frozen=True)
class ArmPair:
    """One input answered by the serving side (A) and the candidate (B).

    Attributes:
        id: Stable id (the shadow pair id, or experiment and question).
        question: The input.
        a_text: The serving side's answer (primary, or the control arm).
        b_text: The candidate's answer (shadow, or the other arm).
        a_error: Why A failed, if it did.
        b_error: Why B failed, if it did.
        a_trace: A's trace id.
        b_trace: B's trace id.
    """

    id: str
    question: str
    a_text: str
    b_text: str
    a_error: str | None = None
    b_error: str | None = None
    a_trace: str | None = None
    b_trace: str | None = None


@dataclass
class PairComparison:
    """The pairs of one experiment, and what the scorers made of them.

    Attributes:
        experiment: ``label/name`` (or ``route/<name>`` for a route's shadow).
        kind: ``shadow`` or ``arms``.
        a: What A is (``v2``, ``primary v2``).
        b: What B is (``v3``, ``shadow v4``).
        pairs: The pairs.
        metrics: One comparison per scorer.
        live: Live metrics per arm from the trace store (calls, errors, feedback, scores).
    """

    experiment: str
    kind: Literal["shadow", "arms"]
    a: str
    b: str
    pairs: list[ArmPair]
    metrics: list[MetricComparison] = field(default_factory=list)
    live: dict[str, ArmMetrics] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        """``worse`` if any metric is worse, ``better`` if one is better and none worse, else inconclusive."""
        verdicts = {m.verdict for m in self.metrics}
        if "worse" in verdicts:
            return "worse"
        return "better" if "better" in verdicts else "inconclusive"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (pairs counted, not listed)."""
        return {
            "experiment": self.experiment,
            "kind": self.kind,
            "a": self.a,
            "b": self.b,
            "pairs": len(self.pairs),
            "verdict": self.verdict,
            "metrics": [m.as_dict() for m in self.metrics],
            "live": {arm: m.as_dict() for arm, m in sorted(self.live.items())},
        }


@dataclass(frozen=True)
class MetricComparison:
    """B against A on one scorer: the mean difference with its interval, and the verdict.

    Attributes:
        metric: The scorer's name.
        mean: Mean of B − A (pairwise judge: B's preference, +1 better … −1 worse).
        low: Lower bound of the interval.
        high: Upper bound.
        n: Pairs scored on both sides.
        unscored: Pairs that could not be scored (a side failed, no judge ...), with one reason.
        verdict: better / worse / inconclusive.
        reason: Why the verdict is what it is.
    """

    metric: str
    mean: float | None
    low: float | None
    high: float | None
    n: int
    unscored: int
    verdict: Verdict
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class RolloutReport:
    """Every experiment's comparison.

    Attributes:
        label: The label filter, if any.
        since: The earliest span start considered (unix seconds).
        comparisons: One per experiment and kind.
    """

    label: str | None
    since: float | None
    comparisons: list[PairComparison]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "label": self.label,
            "since": self.since,
            "comparisons": [c.as_dict() for c in self.comparisons],
        }

    def markdown(self) -> str:
        """A short Markdown report."""
        lines = ["# Rollout report", ""]
        if not self.comparisons:
            lines.append("No arms or shadow pairs in the trace store for this filter.")
        for c in self.comparisons:
            lines += [
                f"## {c.experiment}: {c.b} vs {c.a} ({c.kind}, {len(c.pairs)} pairs) — **{c.verdict}**",
                "",
            ]
            lines += ["| metric | B − A | 95% CI | n | unscored | verdict |", "|---|---|---|---|---|---|"]
            for m in c.metrics:
                mean = "—" if m.mean is None else f"{m.mean:+.3f}"
                ci = "—" if m.low is None or m.high is None else f"[{m.low:+.3f}, {m.high:+.3f}]"
                lines.append(f"| {m.metric} | {mean} | {ci} | {m.n} | {m.unscored} | {m.verdict} |")
            for arm, live in sorted(c.live.items()):
                rate = f"{live.errors / live.calls:.1%}" if live.calls else "—"
                lines.append(
                    f"\n{arm}: {live.calls} calls, error rate {rate}, negative feedback {live.negative}/{live.feedback}"
                )
            lines.append("")
        return "\n".join(lines)


# -- collecting pairs from the trace store ---------------------------------------------------------


_COLUMNS = "span_id, trace_id, status, error, input, output, prompt_ref, route, started_at, attributes"


def _question(db: sqlite3.Connection, trace_id: str, raw_input: str | None) -> str:
    row = db.execute(
        "SELECT input FROM spans WHERE trace_id = ? AND kind = 'app' ORDER BY started_at LIMIT 1", (trace_id,)
    ).fetchone()
    for value in ((row[0] if row else None), raw_input):
        if value is None:
            continue
        try:
            data = json.loads(value)
        except ValueError:
            return str(value)
        if isinstance(data, str):
            return data
        if isinstance(data, dict):  # prompt variables: the question when there is one
            question = data.get("question")
            return str(question) if question is not None else json.dumps(data, sort_keys=True)
        if isinstance(data, list):
            users = [m.get("content", "") for m in data if isinstance(m, dict) and m.get("role") == "user"]
            if users:
                return str(users[-1])
    return ""


def _row(names: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    data = dict(zip(names, row, strict=True))
    data["attributes"] = json.loads(data["attributes"] or "{}")
    return data


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def collect_pairs(
    store: TraceStore, *, label: str | None = None, since: float | None = None
) -> list[PairComparison]:
    """The primary/shadow pairs and same-question arm pairs in the store (unscored).

    Args:
        store: The trace store.
        label: Only experiments of this label (``production``); route shadows count as ``route``.
        since: Only spans started at or after this time (unix seconds).
    """
    start = since or 0.0
    comparisons: list[PairComparison] = []
    with store.reading() as db:
        shadows: dict[tuple[str, str, str], list[ArmPair]] = {}
        cur = db.execute(
            f"SELECT {_COLUMNS} FROM spans WHERE kind = 'llm' AND started_at >= ? "
            "AND json_extract(attributes, '$.shadow_of.pair') IS NOT NULL ORDER BY started_at",
            (start,),
        )
        names = [d[0] for d in cur.description]
        for raw in cur.fetchall():
            shadow = _row(names, raw)
            link = shadow["attributes"]["shadow_of"]
            cur2 = db.execute(
                f"SELECT {_COLUMNS} FROM spans WHERE kind = 'llm' AND json_extract(attributes, '$.shadow.pair') = ?",
                (link["pair"],),
            )
            found = cur2.fetchone()
            if found is None:
                continue
            primary = _row([d[0] for d in cur2.description], found)
            experiment = link.get("experiment") or f"route/{link.get('route') or primary['route']}"
            if label is not None and not experiment.startswith(f"{label}/"):
                continue
            a = f"primary {link.get('primary_arm') or primary['route']}"
            b = f"shadow {link.get('arm') or shadow['route']}"
            shadows.setdefault((experiment, a, b), []).append(
                ArmPair(
                    id=str(link["pair"]),
                    question=_question(db, primary["trace_id"], primary["input"]),
                    a_text=_text(primary["output"]),
                    b_text=_text(shadow["output"]),
                    a_error=primary["error"] if primary["status"] == "error" else None,
                    b_error=shadow["error"] if shadow["status"] == "error" else None,
                    a_trace=primary["trace_id"],
                    b_trace=shadow["trace_id"],
                )
            )
        comparisons += [
            PairComparison(e, "shadow", a, b, pairs) for (e, a, b), pairs in sorted(shadows.items())
        ]
        comparisons += _arm_pairs(db, label, start)
    for comparison in comparisons:
        if comparison.kind == "arms":
            comparison.live = arm_metrics(store, comparison.experiment, since=since)
    return comparisons


def _arm_pairs(db: sqlite3.Connection, label: str | None, start: float) -> list[PairComparison]:
    cur = db.execute(
        f"SELECT {_COLUMNS} FROM spans WHERE kind = 'llm' AND started_at >= ? "
        "AND json_extract(attributes, '$.rollout.experiment') IS NOT NULL "
        "AND json_extract(attributes, '$.shadow_of') IS NULL ORDER BY started_at",
        (start,),
    )
    names = [d[0] for d in cur.description]
    by_experiment: dict[
        str, dict[str, dict[str, dict[str, Any]]]
    ] = {}  # experiment -> question -> arm -> span
    calls: dict[str, dict[str, int]] = {}
    for raw in cur.fetchall():
        span = _row(names, raw)
        rollout = span["attributes"]["rollout"]
        experiment, arm = str(rollout.get("experiment")), str(rollout.get("arm"))
        if label is not None and not experiment.startswith(f"{label}/"):
            continue
        span["question"] = _question(db, span["trace_id"], span["input"])
        by_experiment.setdefault(experiment, {}).setdefault(span["question"], {})[arm] = span  # latest wins
        counts = calls.setdefault(experiment, {})
        counts[arm] = counts.get(arm, 0) + 1
    out = []
    for experiment, questions in sorted(by_experiment.items()):
        counts = calls[experiment]
        control = max(counts, key=lambda arm: (counts[arm], arm))
        for other in sorted(a for a in counts if a != control):
            pairs = [
                ArmPair(
                    id=f"{experiment}:{i}",
                    question=question,
                    a_text=_text(arms[control]["output"]),
                    b_text=_text(arms[other]["output"]),
                    a_error=arms[control]["error"] if arms[control]["status"] == "error" else None,
                    b_error=arms[other]["error"] if arms[other]["status"] == "error" else None,
                    a_trace=arms[control]["trace_id"],
                    b_trace=arms[other]["trace_id"],
                )
                for i, (question, arms) in enumerate(sorted(questions.items()))
                if control in arms and other in arms
            ]
            out.append(PairComparison(experiment, "arms", control, other, pairs))
    return out


# -- scoring ---------------------------------------------------------------------------------------


def _verdict(
    metric: str,
    values: dict[str, float],
    unscored: int,
    reasons: list[str],
    min_pairs: int,
    confidence: float,
) -> MetricComparison:
    n = len(values)
    why = f"; {unscored} unscored ({reasons[0]})" if unscored and reasons else ""
    if n == 0:
        return MetricComparison(metric, None, None, None, 0, unscored, "inconclusive", f"no pair scored{why}")
    data = list(values.values())
    mean = sum(data) / n
    low, high = bootstrap_mean(data, confidence=confidence)
    if n < min_pairs:
        return MetricComparison(
            metric, mean, low, high, n, unscored, "inconclusive", f"only {n} pairs (< {min_pairs}){why}"
        )
    if low > 0:
        verdict: Verdict = "better"
        reason = f"the whole {confidence:.0%} interval is above 0"
    elif high < 0:
        verdict, reason = "worse", f"the whole {confidence:.0%} interval is below 0"
    else:
        verdict, reason = "inconclusive", f"the {confidence:.0%} interval includes 0"
    return MetricComparison(metric, mean, low, high, n, unscored, verdict, reason + why)


def _output(text: str, error: str | None, trace: str | None) -> Output:
    return Output(text=text, error=error, trace_id=trace)


async def _score_pairs(
    comparison: PairComparison, scorers: Sequence[Scorer], *, min_pairs: int, confidence: float
) -> list[MetricComparison]:
    import asyncio

    metrics = []
    for scorer in scorers:
        values: dict[str, float] = {}
        reasons: list[str] = []
        unscored = 0
        if isinstance(scorer, PairwiseJudge):
            results = await asyncio.gather(
                *(
                    scorer.acompare(
                        Case(id=p.id, input=p.question),
                        _output(p.b_text, p.b_error, p.b_trace),
                        _output(p.a_text, p.a_error, p.a_trace),
                    )
                    for p in comparison.pairs
                )
            )
            for pair, score in zip(comparison.pairs, results, strict=True):
                if score.value is None:
                    unscored += 1
                    reasons.append(score.reason)
                else:
                    values[pair.id] = 2.0 * score.value - 1.0  # B's preference: +1 better, -1 worse
        else:
            a_scores: dict[str, float] = {}
            b_scores: dict[str, float] = {}
            for pair in comparison.pairs:
                case = Case(id=pair.id, input=pair.question, expected=None)
                scored: list[Score] = list(
                    await asyncio.gather(
                        scorer.ascore(
                            Sample(case=case, output=_output(pair.a_text, pair.a_error, pair.a_trace))
                        ),
                        scorer.ascore(
                            Sample(case=case, output=_output(pair.b_text, pair.b_error, pair.b_trace))
                        ),
                    )
                )
                if scored[0].value is None or scored[1].value is None:
                    unscored += 1
                    reasons.append(next(s.reason for s in scored if s.value is None))
                    continue
                a_scores[pair.id], b_scores[pair.id] = scored[0].value, scored[1].value
            difference = paired_difference(a_scores, b_scores, confidence=confidence)
            values = dict(difference.per_case) if difference is not None else {}
        metrics.append(_verdict(scorer.name, values, unscored, reasons, min_pairs, confidence))
    return metrics


async def arollout_report(
    store: TraceStore,
    *,
    gateway: Gateway | None = None,
    scorers: Sequence[Scorer] | None = None,
    label: str | None = None,
    since: float | None = None,
    judge: str | None = "judge",
    min_pairs: int = 5,
    confidence: float = 0.95,
) -> RolloutReport:
    """Compare every experiment's pairs (async; sync: :func:`rollout_report`).

    Args:
        store: The trace store holding the live traffic.
        gateway: Serves the judge route.
        scorers: Scorers to apply; default: the pairwise judge on route ``judge`` when the gateway
            has it (otherwise the report says why nothing was scored).
        label: Only this label's experiments.
        since: Only traffic since this time (unix seconds).
        judge: The pairwise judge's route for the default scorers (``None``: no judge).
        min_pairs: Fewer scored pairs than this is always inconclusive.
        confidence: The interval's confidence.
    """
    if scorers is None:
        scorers = [PairwiseJudge(gateway=gateway, judge=judge)] if judge is not None else []
        for s in scorers:
            s.name = "judge_pairwise"
    comparisons = collect_pairs(store, label=label, since=since)
    for comparison in comparisons:
        comparison.metrics = await _score_pairs(
            comparison, scorers, min_pairs=min_pairs, confidence=confidence
        )
    return RolloutReport(label, since, comparisons)


def rollout_report(store: TraceStore, **kwargs: Any) -> RolloutReport:
    """Sync :func:`arollout_report` (same arguments)."""
    return run_sync(arollout_report(store, **kwargs))


def write_pairs_dataset(report: RolloutReport, path: Path | str) -> int:
    """Write every pair as a JSONL eval dataset row (``id``, ``question``, ``answer``, ``candidate``, ...).

    ``answer`` is the serving version's reply, so ``judge_pairwise`` in a suite over this file
    compares a new target against what users saw. Returns the rows written (atomically).
    """
    import os
    import tempfile

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for c in report.comparisons:
                for pair in c.pairs:
                    row = {
                        "id": pair.id,
                        "question": pair.question,
                        "answer": pair.a_text,
                        "candidate": pair.b_text,
                        "experiment": c.experiment,
                        "kind": c.kind,
                        "a": c.a,
                        "b": c.b,
                        "a_trace": pair.a_trace,
                        "b_trace": pair.b_trace,
                    }
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    rows += 1
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return rows
