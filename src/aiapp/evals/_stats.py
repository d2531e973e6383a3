"""Statistics that make a score trustworthy: sample sizes, bootstrap intervals, paired differences.

Repeats are handled by resampling *cases* (a cluster bootstrap): a case run five times is still
one case, so repeats narrow per-case noise without pretending the sample grew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

_SEED = 20261122
_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap interval.

    Attributes:
        mean: Mean over cases (each case's repeats averaged first).
        low: Lower bound of the interval (``None`` with fewer than 2 cases).
        high: Upper bound.
        n: Cases scored.
        unscored: Cases with no score, excluded from the mean.
        pass_rate: Share of scored cases that passed, when the scorer has a pass mark.
        case_std: Mean within-case standard deviation over repeats (``None`` without repeats).
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int
    unscored: int = 0
    pass_rate: float | None = None
    case_std: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        """A JSON-ready form."""
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "unscored": self.unscored,
            "pass_rate": self.pass_rate,
            "case_std": self.case_std,
        }


def bootstrap_mean(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = _RESAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2 or np.all(data == data[0]):
        mean = float(data.mean()) if data.size else float("nan")
        return mean, mean
    rng = np.random.default_rng(_SEED)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def estimate(
    per_case: Mapping[str, Sequence[float]],
    *,
    unscored: int = 0,
    passes: Sequence[bool] = (),
    confidence: float = 0.95,
) -> Estimate:
    """Summarize one metric from its per-case values (one value per repeat)."""
    # Plain sums: np.mean per case costs ~5 µs each, which adds up over 20k cases.
    means = [sum(v) / len(v) for v in per_case.values() if len(v)]
    if not means:
        return Estimate(None, None, None, 0, unscored, None, None)
    low, high = bootstrap_mean(means, confidence=confidence) if len(means) > 1 else (None, None)
    spreads = [float(np.std(v)) for v in per_case.values() if len(v) > 1]
    return Estimate(
        mean=float(np.mean(means)),
        low=low,
        high=high,
        n=len(means),
        unscored=unscored,
        pass_rate=(sum(passes) / len(passes)) if passes else None,
        case_std=float(np.mean(spreads)) if spreads else None,
    )


@dataclass(frozen=True)
class PairedDifference:
    """``B − A`` over cases scored in both runs, with its interval and a win/loss/tie count."""

    mean: float
    low: float
    high: float
    n: int
    wins: int
    losses: int
    ties: int
    per_case: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int]:
        """A JSON-ready form (without per-case values)."""
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
        }


def paired_difference(
    a: Mapping[str, float], b: Mapping[str, float], *, confidence: float = 0.95, tie_tolerance: float = 1e-9
) -> PairedDifference | None:
    """The paired difference ``b − a`` on the cases both have; ``None`` when they share none."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = {case: b[case] - a[case] for case in common}
    values = list(diffs.values())
    low, high = bootstrap_mean(values, confidence=confidence)
    return PairedDifference(
        mean=float(np.mean(values)),
        low=low,
        high=high,
        n=len(values),
        wins=sum(1 for d in values if d > tie_tolerance),
        losses=sum(1 for d in values if d < -tie_tolerance),
        ties=sum(1 for d in values if abs(d) <= tie_tolerance),
        per_case=diffs,
    )
