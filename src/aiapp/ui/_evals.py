"""Eval runs as the console reads them: where the runner stores results, folded into reports.

The runner appends one line per (case, repeat) to ``$AIAPP_HOME/evals/<suite>/<run id>/results.jsonl``
(:mod:`aiapp.evals._runner`); a run here is one such folder. Its metrics and intervals are computed
from the stored scores with the same statistics the runner uses (:func:`aiapp.evals.estimate`), and
two runs compare with paired differences on their shared cases (:func:`aiapp.evals.paired_difference`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiapp.errors import InputError
from aiapp.evals import Estimate, PairedDifference, estimate, paired_difference


@dataclass
class RunView:
    """One stored run: its rows summarized into per-metric estimates."""

    suite: str
    run_id: str
    path: Path
    modified: float
    samples: int = 0
    errors: int = 0
    estimates: dict[str, Estimate] = field(default_factory=dict)
    per_case: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def when(self) -> str:
        """The results file's modification time, UTC."""
        return dt.datetime.fromtimestamp(self.modified, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

    def rows(self) -> Iterator[dict[str, Any]]:
        """The stored result rows (a torn last line is skipped)."""
        with (self.path / "results.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "case_id" in row:
                    yield row


def _safe(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"{name!r} is not a suite or run name")
    return name


class EvalStore:
    """The eval runs under ``$AIAPP_HOME/evals``.

    Args:
        home: ``AIAPP_HOME``.
    """

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "evals"

    def suites(self) -> list[str]:
        """Suites with at least one stored run."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*/results.jsonl")))

    def runs(self, suite: str) -> list[RunView]:
        """A suite's runs, newest first."""
        folder = self.root / _safe(suite)
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if (p / "results.jsonl").is_file()]
        runs = [self._load(suite, p) for p in found]
        return sorted(runs, key=lambda r: r.modified, reverse=True)

    def run(self, suite: str, run_id: str) -> RunView:
        """One run.

        Raises:
            InputError: no such run.
        """
        path = self.root / _safe(suite) / _safe(run_id)
        if not (path / "results.jsonl").is_file():
            raise InputError(f"no eval run {suite}/{run_id} under {self.root}")
        return self._load(suite, path)

    def latest(self, suite: str) -> RunView | None:
        """The suite's newest run."""
        runs = self.runs(suite)
        return runs[0] if runs else None

    def _load(self, suite: str, path: Path) -> RunView:
        view = RunView(suite, path.name, path, (path / "results.jsonl").stat().st_mtime)
        values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        passes: dict[str, list[bool]] = defaultdict(list)
        unscored: dict[str, int] = defaultdict(int)
        for row in view.rows():
            view.samples += 1
            if (row.get("output") or {}).get("error"):
                view.errors += 1
            for score in row.get("scores") or []:
                name = str(score.get("scorer"))
                value = score.get("value")
                if value is None:
                    unscored[name] += 1
                    continue
                values[name][str(row["case_id"])].append(float(value))
                if score.get("passed") is not None:
                    passes[name].append(bool(score["passed"]))
        for name in sorted(set(values) | set(unscored)):
            view.estimates[name] = estimate(values[name], unscored=unscored[name], passes=passes[name])
            view.per_case[name] = {case: sum(v) / len(v) for case, v in values[name].items() if v}
        return view


def case_rows(run: RunView) -> list[dict[str, Any]]:
    """Per-case results, failures first (then unscored, then by mean score, lowest first)."""
    out = []
    for row in run.rows():
        scores = {str(s.get("scorer")): s for s in row.get("scores") or []}
        failed = any(s.get("passed") is False for s in scores.values()) or bool(
            (row.get("output") or {}).get("error")
        )
        values = [float(s["value"]) for s in scores.values() if s.get("value") is not None]
        mean = sum(values) / len(values) if values else None
        out.append({"row": row, "scores": scores, "failed": failed, "mean": mean, "key": _key(row)})
    out.sort(key=lambda r: (not r["failed"], r["mean"] is not None, r["mean"] or 0.0, r["key"]))
    return out


def _key(row: dict[str, Any]) -> str:
    repeat = int(row.get("repeat") or 0)
    return str(row["case_id"]) if repeat == 0 else f"{row['case_id']}#{repeat}"


@dataclass
class Comparison:
    """Run B against run A: metric deltas, cases whose verdict changed, outputs side by side."""

    a: RunView
    b: RunView
    deltas: dict[str, PairedDifference | None]
    changed: list[dict[str, Any]]
    pairs: list[dict[str, Any]]


def compare(a: RunView, b: RunView, *, limit: int = 200) -> Comparison:
    """Compare two runs of the same suite (B − A on shared cases)."""
    metrics = sorted(set(a.estimates) | set(b.estimates))
    deltas = {m: paired_difference(a.per_case.get(m, {}), b.per_case.get(m, {})) for m in metrics}
    rows_a = {_key(r): r for r in a.rows()}
    changed: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    for row_b in b.rows():
        key = _key(row_b)
        row_a = rows_a.get(key)
        if row_a is None:
            continue
        sa = {str(s.get("scorer")): s for s in row_a.get("scores") or []}
        sb = {str(s.get("scorer")): s for s in row_b.get("scores") or []}
        flips = [
            {"metric": m, "a": sa[m].get("passed"), "b": sb[m].get("passed")}
            for m in sorted(set(sa) & set(sb))
            if sa[m].get("passed") is not None
            and sb[m].get("passed") is not None
            and sa[m].get("passed") != sb[m].get("passed")
        ]
        entry = {
            "key": key,
            "input": row_b.get("input"),
            "a": (row_a.get("output") or {}).get("error") or (row_a.get("output") or {}).get("text", ""),
            "b": (row_b.get("output") or {}).get("error") or (row_b.get("output") or {}).get("text", ""),
            "flips": flips,
        }
        if flips:
            changed.append(entry)
        if len(pairs) < limit:
            pairs.append(entry)
    pairs.sort(key=lambda e: (not e["flips"], e["key"]))
    return Comparison(a, b, deltas, changed, pairs)
