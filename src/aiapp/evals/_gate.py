"""The CI gate: thresholds and regressions against a committed baseline, with honest verdicts.

Each gated metric gets *pass*, *fail* or *inconclusive*:

* ``min``: pass when the interval's low end clears the floor, fail when its high end is below it,
  inconclusive when the interval straddles it;
* ``max_drop``: the paired difference against the baseline (same cases) — pass when its low end is
  above ``-max_drop``, fail when its high end is below it, inconclusive when it straddles.

A metric with no scored cases is inconclusive ("unscored"), never a silent pass.

An LLM judge metric gates only once validated against people: the gate measures its agreement
with the human ratings in ``review/<suite>/ratings/`` (see :mod:`aiapp.evals._review`) and a judge
below its ``min_agreement`` (default 0.6), or with nothing to measure against, is reported as
*not validated* (advisory): its verdict is shown, and it cannot fail the gate.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiapp._files import atomic_write
from aiapp.errors import InputError
from aiapp.evals._review import JudgeCheck, judge_validation, list_queues, load_queue, load_ratings
from aiapp.evals._runner import RunResult
from aiapp.evals._stats import PairedDifference, paired_difference
from aiapp.evals._suite import Suite

Verdict = Literal["pass", "fail", "inconclusive"]

#: Process exit codes of ``aiapp eval --gate``.
EXIT_CODES: dict[Verdict, int] = {"pass": 0, "fail": 1, "inconclusive": 3}


@dataclass
class MetricVerdict:
    """The gate's decision on one metric."""

    metric: str
    verdict: Verdict
    reason: str
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    baseline_mean: float | None = None
    difference: PairedDifference | None = None
    advisory: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "metric": self.metric,
            "verdict": self.verdict,
            "reason": self.reason,
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "baseline_mean": self.baseline_mean,
            "difference": self.difference.as_dict() if self.difference else None,
            "advisory": self.advisory,
        }


@dataclass
class GateResult:
    """All metric verdicts and the suite's overall verdict."""

    suite: str
    verdict: Verdict
    metrics: list[MetricVerdict] = field(default_factory=list)
    baseline_path: Path | None = None
    baseline_found: bool = False
    on_inconclusive: str = "fail"
    judges: dict[str, JudgeCheck] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail, 3 inconclusive (0 when the suite says ``on_inconclusive: pass``)."""
        if self.verdict == "inconclusive" and self.on_inconclusive == "pass":
            return 0
        return EXIT_CODES[self.verdict]


def load_baseline(path: Path) -> dict[str, Any] | None:
    """A baseline file's content, or ``None`` when there is none."""
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: baseline is not valid JSON: {exc}") from exc
    if not isinstance(data.get("metrics"), dict):
        raise InputError(f"{path}: baseline has no `metrics` mapping; re-create it with --update-baseline")
    return data


def write_baseline(result: RunResult, suite: Suite) -> Path:
    """Write the run's per-case values as the suite's baseline (atomically)."""
    path = suite.baseline_path
    data = {
        "suite": suite.name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "target": result.target,
        "fingerprint": result.fingerprint,
        "metrics": {
            name: {
                "mean": est.mean,
                "low": est.low,
                "high": est.high,
                "n": est.n,
                "per_case": {k: round(v, 6) for k, v in sorted(result.case_values(name).items())},
            }
            for name, est in sorted(result.estimates.items())
        },
    }
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def validate_judges(
    result: RunResult, suite: Suite, *, review_root: Path | None = None
) -> dict[str, JudgeCheck]:
    """Each judge metric of the run checked against ``<review_root>/review/<suite>/ratings/``.

    ``review_root`` defaults to the repository root: the folder above the suite's folder.
    """
    root = review_root if review_root is not None else suite.base_dir.parent
    where = f"review/{suite.name}/"
    if suite.name in list_queues(root):
        queue, _ = load_queue(root, suite.name)
        ratings = load_ratings(root, suite.name, queue=queue)
        scale = (float(queue.rubric.scale_min), float(queue.rubric.scale_max))
    else:
        ratings, scale = load_ratings(root, suite.name), (1.0, 5.0)
    return judge_validation(result.iter_rows(), ratings, scale=scale, where=where)


def gate(
    result: RunResult,
    suite: Suite,
    *,
    advisory_metrics: set[str] | None = None,
    review_root: Path | None = None,
) -> GateResult:
    """Judge a run against the suite's gate (judges validated as in :func:`validate_judges`)."""
    baseline_path = suite.baseline_path
    baseline = load_baseline(baseline_path)
    verdicts: list[MetricVerdict] = []
    judges = validate_judges(result, suite, review_root=review_root)
    # A judge's standing comes from its measured agreement, not only from the scorer's own flag.
    advisory_metrics = {m for m in advisory_metrics or set() if m not in judges}
    advisory_metrics |= {m for m, check in judges.items() if not check.may_gate}

    def why(metric: str, reason: str) -> str:
        check = judges.get(metric)
        if check is None:
            return reason
        tail = "" if check.may_gate else " — reported, cannot fail the gate"
        return f"{reason}; judge {check.note}{tail}"

    for metric, bar in suite.gate.metrics.items():
        est = result.estimates.get(metric)
        if est is None or est.mean is None:
            verdicts.append(
                MetricVerdict(
                    metric,
                    "inconclusive",
                    why(metric, "no scored cases (see unscored reasons)"),
                    advisory=metric in advisory_metrics,
                )
            )
            continue
        parts: list[tuple[Verdict, str]] = []
        low = est.low if est.low is not None else est.mean
        high = est.high if est.high is not None else est.mean
        if bar.min is not None:
            if low >= bar.min:
                parts.append(("pass", f"≥ {bar.min:g}"))
            elif high < bar.min:
                parts.append(("fail", f"below the floor {bar.min:g}"))
            else:
                parts.append(
                    ("inconclusive", f"interval [{low:.3f}, {high:.3f}] straddles the floor {bar.min:g}")
                )
        diff: PairedDifference | None = None
        base_mean: float | None = None
        if bar.max_drop is not None:
            base = (baseline or {}).get("metrics", {}).get(metric)
            if base is None:
                parts.append(("inconclusive", "no baseline for this metric (run with --update-baseline)"))
            else:
                base_mean = base.get("mean")
                diff = paired_difference(
                    base.get("per_case", {}), result.case_values(metric), confidence=suite.gate.confidence
                )
                if diff is None:
                    parts.append(("inconclusive", "no cases in common with the baseline"))
                elif diff.low >= -bar.max_drop:
                    parts.append(
                        ("pass", f"change {diff.mean:+.3f} within the allowed drop {bar.max_drop:g}")
                    )
                elif diff.high < -bar.max_drop:
                    parts.append(
                        (
                            "fail",
                            f"dropped {-diff.mean:.3f} [{-diff.high:.3f}, {-diff.low:.3f}] > allowed {bar.max_drop:g}",
                        )
                    )
                else:
                    parts.append(
                        (
                            "inconclusive",
                            f"change {diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] straddles −{bar.max_drop:g}",
                        )
                    )
        verdict: Verdict = (
            "fail"
            if any(v == "fail" for v, _ in parts)
            else "inconclusive"
            if any(v == "inconclusive" for v, _ in parts)
            else "pass"
        )
        verdicts.append(
            MetricVerdict(
                metric,
                verdict,
                why(metric, "; ".join(reason for _, reason in parts) or "no bar set"),
                mean=est.mean,
                low=est.low,
                high=est.high,
                baseline_mean=base_mean,
                difference=diff,
                advisory=metric in advisory_metrics,
            )
        )
    binding = [v for v in verdicts if not v.advisory]
    overall: Verdict = (
        "fail"
        if any(v.verdict == "fail" for v in binding)
        else "inconclusive"
        if any(v.verdict == "inconclusive" for v in binding)
        else "pass"
    )
    return GateResult(
        suite=suite.name,
        verdict=overall,
        metrics=verdicts,
        baseline_path=baseline_path,
        baseline_found=baseline is not None,
        on_inconclusive=suite.gate.on_inconclusive,
        judges=judges,
    )
