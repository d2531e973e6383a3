"""Canary guard rails: live metrics per arm, read from the trace store, compared with the control.

The metrics of an experiment (``label/name``) come from the model-call spans whose ``rollout``
attribute names it (the gateway stores a call's metadata there):

- **error rate**: failed calls (a guard's block is not counted here: it has its own metric);
- **guard rate**: calls on which a guard did not pass (blocked, redacted, flagged);
- **negative feedback**: calls with feedback whose feedback includes a negative score;
- **online score**: the mean of online eval scores (the ``scores`` table, when the store has one).

A metric regresses when the canary is worse than the control by more than its threshold, with at
least ``min_samples`` observations on each arm, *and* the difference stays positive at the spec's
one-sided confidence (a normal approximation), so a handful of unlucky calls does not roll back a
healthy canary.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

from aiapp._rollout_config import CanarySpec
from aiapp.tracing import TraceStore

__all__ = ["ArmMetrics", "Regression", "arm_metrics", "find_regression"]


@dataclass
class ArmMetrics:
    """One arm's live counts since the window start.

    Attributes:
        arm: ``vN``.
        calls: Model calls.
        errors: Failed calls (guard blocks excluded).
        guard_hits: Calls on which a guard did not pass.
        feedback: Calls with feedback.
        negative: Calls with negative feedback.
        scores: Online scores (values).
    """

    arm: str
    calls: int = 0
    errors: int = 0
    guard_hits: int = 0
    feedback: int = 0
    negative: int = 0
    scores: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts (scores summarised)."""
        out = asdict(self)
        values = out.pop("scores")
        out["score_n"] = len(values)
        out["score_mean"] = sum(values) / len(values) if values else None
        return out


@dataclass(frozen=True)
class Regression:
    """A metric on which the canary regressed beyond its threshold.

    Attributes:
        metric: ``error_rate``, ``guard_rate``, ``negative_feedback`` or ``online_score``.
        canary: The canary's value.
        control: The control's value.
        threshold: The regression tolerated.
        lower_bound: The one-sided lower confidence bound of the regression.
        samples: Observations on (canary, control).
    """

    metric: str
    canary: float
    control: float
    threshold: float
    lower_bound: float
    samples: tuple[int, int]


_CALLS = """
SELECT json_extract(s.attributes, '$.rollout.arm') AS arm,
       COUNT(*),
       SUM(CASE WHEN s.status = 'error' AND COALESCE(s.error, '') NOT LIKE 'GuardrailError%' THEN 1 ELSE 0 END),
       SUM(CASE WHEN EXISTS (SELECT 1 FROM json_each(s.attributes, '$.guards') g
                             WHERE json_extract(g.value, '$.passed') = 0) THEN 1 ELSE 0 END)
FROM spans s
WHERE s.kind = 'llm' AND s.started_at >= ? AND json_extract(s.attributes, '$.rollout.experiment') = ?
GROUP BY arm
"""

_FEEDBACK = """
SELECT json_extract(s.attributes, '$.rollout.arm') AS arm, COUNT(DISTINCT s.trace_id),
       COUNT(DISTINCT CASE WHEN f.score < 0 THEN s.trace_id END)
FROM spans s JOIN feedback f ON f.trace_id = s.trace_id
WHERE s.kind = 'llm' AND s.started_at >= ? AND json_extract(s.attributes, '$.rollout.experiment') = ?
GROUP BY arm
"""

_SCORES = """
SELECT json_extract(s.attributes, '$.rollout.arm') AS arm, sc.value
FROM spans s JOIN scores sc ON sc.trace_id = s.trace_id
WHERE s.kind = 'llm' AND s.started_at >= ? AND sc.value IS NOT NULL
  AND json_extract(s.attributes, '$.rollout.experiment') = ?
"""


def arm_metrics(store: TraceStore, experiment: str, *, since: float | None = None) -> dict[str, ArmMetrics]:
    """Each arm's live metrics for ``experiment`` from spans started at or after ``since``.

    A store without a ``scores`` table (older schema) simply has no online scores.
    """
    start = since if since is not None else 0.0
    out: dict[str, ArmMetrics] = {}

    def arm(name: str) -> ArmMetrics:
        return out.setdefault(name, ArmMetrics(name))

    with store.reading() as db:
        for name, calls, errors, guards in db.execute(_CALLS, (start, experiment)):
            if name is None:
                continue
            metrics = arm(name)
            metrics.calls, metrics.errors, metrics.guard_hits = int(calls), int(errors or 0), int(guards or 0)
        for name, with_feedback, negative in db.execute(_FEEDBACK, (start, experiment)):
            if name is not None:
                arm(name).feedback, arm(name).negative = int(with_feedback), int(negative or 0)
        try:
            rows = db.execute(_SCORES, (start, experiment)).fetchall()
        except sqlite3.OperationalError:  # no scores table yet
            rows = []
        for name, value in rows:
            if name is not None:
                arm(name).scores.append(float(value))
    return out


def _proportion(
    metric: str, threshold: float, k1: int, n1: int, k0: int, n0: int, z: float
) -> Regression | None:
    p1, p0 = k1 / n1, k0 / n0
    diff = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    lower = diff - z * se
    if diff > threshold and lower > 0:
        return Regression(metric, p1, p0, threshold, lower, (n1, n0))
    return None


def _mean_drop(
    metric: str, threshold: float, canary: list[float], control: list[float], z: float
) -> Regression | None:
    m1, m0 = sum(canary) / len(canary), sum(control) / len(control)
    drop = m0 - m1

    def var(values: list[float], mean: float) -> float:
        return sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)

    se = math.sqrt(var(canary, m1) / len(canary) + var(control, m0) / len(control))
    lower = drop - z * se
    if drop > threshold and lower > 0:
        return Regression(metric, m1, m0, threshold, lower, (len(canary), len(control)))
    return None


def find_regression(spec: CanarySpec, canary: ArmMetrics, control: ArmMetrics) -> Regression | None:
    """The first metric on which ``canary`` regressed beyond its threshold against ``control``."""
    z = NormalDist().inv_cdf(spec.confidence)
    need = spec.min_samples
    checks: list[Regression | None] = []
    if spec.error_rate is not None and canary.calls >= need and control.calls >= need:
        checks.append(
            _proportion(
                "error_rate", spec.error_rate, canary.errors, canary.calls, control.errors, control.calls, z
            )
        )
    if spec.guard_rate is not None and canary.calls >= need and control.calls >= need:
        checks.append(
            _proportion(
                "guard_rate",
                spec.guard_rate,
                canary.guard_hits,
                canary.calls,
                control.guard_hits,
                control.calls,
                z,
            )
        )
    if spec.negative_feedback is not None and canary.feedback >= need and control.feedback >= need:
        checks.append(
            _proportion(
                "negative_feedback",
                spec.negative_feedback,
                canary.negative,
                canary.feedback,
                control.negative,
                control.feedback,
                z,
            )
        )
    if spec.online_score is not None and len(canary.scores) >= need and len(control.scores) >= need:
        checks.append(_mean_drop("online_score", spec.online_score, canary.scores, control.scores, z))
    return next((c for c in checks if c is not None), None)


def window_start(spec: CanarySpec, now: float | None = None) -> float:
    """The earliest span start the canary's metrics look at."""
    return (now if now is not None else time.time()) - spec.window_s
