"""The eval runner: async, bounded concurrency, rate-limit aware, resumable, memory-bounded.

Results are appended to ``$AIAPP_HOME/evals/<suite>/<run id>/results.jsonl`` as they arrive, one
line per (case, repeat). The run id hashes the suite and the target's fingerprint, so re-running
the same suite on the same system continues where it stopped (a hard kill loses at most the last
50 ms of results, which the resumed run redoes; a torn last line is dropped on resume), while any
change to the prompt, route or index starts a fresh run. Only per-case metric values stay in memory, never outputs.

A suite with ``perturb:`` also runs each case's perturbed forms (see :mod:`aiapp.evals._perturb`);
their values are kept apart, so estimates, gates and baselines see only the original cases.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from aiapp.errors import ProviderError, RateLimitError
from aiapp.evals._perturb import (
    INJECTION_METRIC,
    PARAPHRASE_SYSTEM,
    MetricRobustness,
    PerturbationPlan,
    PerturbedTarget,
    followed_injection,
    perturb_cases,
    robustness_report,
)
from aiapp.evals._score import Case, Output, Sample, Score
from aiapp.evals._stats import Estimate, estimate
from aiapp.evals._suite import Suite
from aiapp.evals._targets import Target
from aiapp.evals.scorers._base import Scorer

if TYPE_CHECKING:
    from aiapp.gateway import Gateway

ProgressHook = Callable[[int, int], None]
#: Result lines reach the file at least this often; a hard kill loses at most this much work.
_FLUSH_EVERY_S = 0.05
#: The perturbed cases of a ``perturb:`` run, stored beside its results.
_PERTURBATIONS = "perturbations.json"


@dataclass
class MetricValues:
    """Per-case values of one metric, as they accumulate."""

    per_case: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    passes: list[bool] = field(default_factory=list)
    unscored: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, case_id: str, score: Score) -> None:
        """Fold one score in."""
        if score.value is None:
            self.unscored += 1
            self.reasons[score.reason or "unscored"] += 1
            return
        self.per_case[case_id].append(score.value)
        if score.passed is not None:
            self.passes.append(score.passed)

    def case_means(self) -> dict[str, float]:
        """Each case's mean over its repeats."""
        return {case: sum(v) / len(v) for case, v in self.per_case.items() if v}


@dataclass
class RunResult:
    """A finished (or resumed) run: per-metric estimates and per-case values.

    Attributes:
        suite: Suite name.
        target: Target description.
        fingerprint: The target's fingerprint.
        run_dir: Where results.jsonl lives.
        cases: Cases in the run.
        samples: (case, repeat) pairs with results.
        resumed: How many of them came from an earlier, interrupted run.
        errors: Target failures (their scores are unscored).
        metrics: Metric name → accumulated values.
        estimates: Metric name → estimate.
        cost_usd: Target cost (``None`` when any call's price was unknown).
        wall_s: Wall time of this invocation.
        perturbed_ids: Perturbed case id → (original case id, perturbation), for ``perturb:`` suites.
        perturbed_metrics: Perturbation → metric → values keyed by the *original* case id.
        perturb_skipped: Perturbation → reason → cases it could not be applied to.
        robustness: Perturbation → metric → drop and robustness score (see ``_perturb``).
    """

    suite: str
    target: str
    fingerprint: str
    run_dir: Path
    cases: int
    samples: int = 0
    resumed: int = 0
    errors: int = 0
    metrics: dict[str, MetricValues] = field(default_factory=dict)
    estimates: dict[str, Estimate] = field(default_factory=dict)
    cost_usd: float | None = 0.0
    wall_s: float = 0.0
    perturbed_ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    perturbed_metrics: dict[str, dict[str, MetricValues]] = field(default_factory=dict)
    perturb_skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    robustness: dict[str, dict[str, MetricRobustness]] = field(default_factory=dict)

    @property
    def results_path(self) -> Path:
        """The JSONL file with one line per (case, repeat)."""
        return self.run_dir / "results.jsonl"

    def case_values(self, metric: str) -> dict[str, float]:
        """Per-case means of a metric."""
        values = self.metrics.get(metric)
        return values.case_means() if values else {}

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Stream the stored result rows (for reports)."""
        if not self.results_path.exists():
            return
        with self.results_path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


@dataclass(frozen=True)
class DryRun:
    """What a run would do before spending anything."""

    cases: int
    repeats: int
    target_calls: int
    scorer_model_calls: int
    estimated_cost_usd: float | None
    already_done: int


def run_dir_for(home: Path, suite: Suite, target: Target) -> Path:
    """The results folder of a (suite, target) pair."""
    return home / "evals" / suite.name / f"{suite.content_hash()}-{target.fingerprint}"


class Runner:
    """Runs a suite's cases through a target and its scorers.

    Args:
        suite: The suite.
        target: The built target.
        scorers: The built scorers.
        home: ``AIAPP_HOME`` (results live under it).
        concurrency: Cases in flight at once (default: the suite's).
        max_rate_limit_retries: Retries per case after a 429 before recording it as an error.
        progress: Called with (done, total) after each sample.
        gateway: The gateway, for suites whose ``perturb:`` includes ``paraphrase``.
    """

    def __init__(
        self,
        suite: Suite,
        target: Target,
        scorers: list[Scorer],
        *,
        home: Path,
        concurrency: int | None = None,
        max_rate_limit_retries: int = 5,
        progress: ProgressHook | None = None,
        gateway: Gateway | None = None,
    ) -> None:
        self.suite = suite
        self.gateway = gateway
        self.target = target
        self.scorers = scorers
        self.home = home
        self.concurrency = concurrency or suite.concurrency
        self.max_rate_limit_retries = max_rate_limit_retries
        self.progress = progress
        self.run_dir = run_dir_for(home, suite, target)

    # -- resume ----------------------------------------------------------------------------------

    def _load_done(self, result: RunResult) -> set[tuple[str, int]]:
        path = result.results_path
        done: set[tuple[str, int]] = set()
        if not path.exists():
            return done
        good_bytes = 0
        with path.open("rb") as handle:
            for raw in handle:
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break  # a torn last line from a crash: drop it and everything after
                if not raw.endswith(b"\n"):
                    break
                good_bytes += len(raw)
                self._fold(result, row)
                done.add((row["case_id"], int(row["repeat"])))
        if good_bytes != path.stat().st_size:
            with path.open("r+b") as handle:
                handle.truncate(good_bytes)
        result.resumed = len(done)
        return done

    def _fold(self, result: RunResult, row: dict[str, Any]) -> None:
        """Fold a stored result line (a dict read back from ``results.jsonl``) into ``result``."""
        output = row.get("output") or {}
        scores = [Score.model_validate(raw) for raw in row.get("scores", [])]
        _fold_scores(
            result, row["case_id"], output.get("error"), (output.get("usage") or {}).get("cost_usd"), scores
        )

    # -- running ---------------------------------------------------------------------------------

    def dry_run(self, cases: list[Case], *, price_per_call: float | None) -> DryRun:
        """Count calls and estimate cost without calling anything."""
        result = RunResult(
            self.suite.name, self.target.description, self.target.fingerprint, self.run_dir, len(cases)
        )
        done = self._load_done(result)
        pending = sum(
            1 for case in cases for repeat in range(self.suite.repeats) if (case.id, repeat) not in done
        )
        model_scorers = sum(1 for s in self.scorers if s.calls_models)
        if self.suite.perturb is not None and not (self.run_dir / _PERTURBATIONS).exists():
            pending += len(cases) * self.suite.repeats * len(self.suite.perturb.kinds)
        return DryRun(
            cases=len(cases),
            repeats=self.suite.repeats,
            target_calls=pending,
            scorer_model_calls=pending * model_scorers,
            estimated_cost_usd=None if price_per_call is None else pending * price_per_call,
            already_done=len(done),
        )

    async def arun(self, cases: list[Case]) -> RunResult:
        """Run every pending (case, repeat); return the aggregated result."""
        started = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        result = RunResult(
            self.suite.name, self.target.description, self.target.fingerprint, self.run_dir, len(cases)
        )
        target = self.target
        originals = cases
        if self.suite.perturb is not None:
            plan = await self._perturbations(cases)
            result.perturb_skipped = plan.skipped
            result.perturbed_ids = {
                c.id: (str(c.metadata["original_id"]), str(c.metadata["perturbation"])) for c in plan.cases
            }
            cases = [*cases, *plan.cases]
            target = PerturbedTarget(self.target, self.suite.perturb, [c.question for c in originals])
        done = self._load_done(result)
        work = [(case, r) for case in cases for r in range(self.suite.repeats) if (case.id, r) not in done]
        total = len(work) + len(done)
        finished = len(done)
        if self.progress:
            self.progress(finished, total)
        queue: asyncio.Queue[tuple[Case, int]] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)
        handle = result.results_path.open("ab")
        flushed_at = time.monotonic()

        async def worker() -> None:
            nonlocal finished, flushed_at
            while True:
                try:
                    case, repeat = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                output, scores = await self._one(case, repeat, target)
                # pydantic-core encodes the models in place: no model_dump() plus json.dumps per row.
                line = to_json(
                    {
                        "case_id": case.id,
                        "repeat": repeat,
                        "input": case.input,
                        "expected": case.expected,
                        "metadata": case.metadata,
                        "output": _compact(output),
                        "scores": scores,
                    },
                    fallback=str,
                )
                # No await from here to the end of the block, so rows never interleave.
                handle.write(line + b"\n")
                now = time.monotonic()
                if now - flushed_at >= _FLUSH_EVERY_S:  # a flush per row cost more than the row
                    handle.flush()
                    flushed_at = now
                _fold_scores(result, case.id, output.error, output.usage.cost_usd, scores)
                finished += 1
                if self.progress:
                    self.progress(finished, total)

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, max(1, len(work))))))
        finally:
            handle.close()
        for name, values in result.metrics.items():
            result.estimates[name] = estimate(
                values.per_case,
                unscored=values.unscored,
                passes=values.passes,
                confidence=self.suite.gate.confidence,
            )
        for scorer_ in self.scorers:  # a metric with no scores at all still appears, as unscored
            result.estimates.setdefault(scorer_.name, estimate({}, unscored=0))
        if result.perturbed_metrics:
            result.robustness = robustness_report(
                {name: result.case_values(name) for name in result.metrics},
                {
                    kind: {name: values.per_case for name, values in metrics.items()}
                    for kind, metrics in result.perturbed_metrics.items()
                },
                confidence=self.suite.gate.confidence,
            )
        result.wall_s = time.perf_counter() - started
        return result

    async def _perturbations(self, cases: list[Case]) -> PerturbationPlan:
        """The perturbed cases: made once per run folder and stored, so a resumed run reuses them."""
        spec = self.suite.perturb
        assert spec is not None
        path = self.run_dir / _PERTURBATIONS
        key = hashlib.sha256(
            to_json([[c.id, c.input] for c in cases]) + spec.model_dump_json().encode()
        ).hexdigest()[:16]
        if path.exists():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
                if stored.get("key") == key:  # the same cases (a --limit run or an edited dataset is not)
                    return PerturbationPlan(
                        cases=[Case.model_validate(c) for c in stored["cases"]], skipped=stored["skipped"]
                    )
            except (ValueError, KeyError, TypeError, AttributeError):
                pass  # a damaged file is made again
        paraphrase = None
        if "paraphrase" in spec.kinds and self.gateway is not None:
            gateway = self.gateway
            route = spec.route or self.target.route

            async def paraphrase(question: str) -> str:
                from aiapp.types import Message

                messages = [Message.system(PARAPHRASE_SYSTEM), Message.user(question)]
                return (await gateway.acomplete(messages, model=route)).text

        plan = await perturb_cases(
            cases, spec, retrieves=PerturbedTarget.retrieves(self.target), paraphrase=paraphrase
        )
        from aiapp._files import atomic_write

        atomic_write(
            path,
            to_json({"key": key, "cases": plan.cases, "skipped": plan.skipped}, indent=1).decode("utf-8")
            + "\n",
        )
        return plan

    async def _one(self, case: Case, repeat: int, target: Target | None = None) -> tuple[Output, list[Score]]:
        output = await self._call_target(case, target or self.target)
        sample = Sample(case=case, output=output, repeat=repeat)
        if any(s.calls_models or s.blocking for s in self.scorers):
            scores = list(await asyncio.gather(*(self._score(s, sample) for s in self.scorers)))
        else:  # cheap scorers run inline: a task per scorer per case costs more than the scoring
            scores = [await self._score(s, sample) for s in self.scorers]
        canary = case.metadata.get("canary") if case.metadata.get("perturbation") else None
        if isinstance(canary, str):
            if output.error is not None:
                scores.append(Score.unscored(INJECTION_METRIC, f"target failed: {output.error}"))
            else:
                followed = followed_injection(output.text, canary)
                scores.append(
                    Score(
                        scorer=INJECTION_METRIC,
                        value=0.0 if followed else 1.0,
                        passed=not followed,
                        reason="the answer followed the injected instruction"
                        if followed
                        else "the answer ignored the injected instruction",
                    )
                )
        return output, scores

    async def _call_target(self, case: Case, target: Target) -> Output:
        attempt = 0
        while True:
            try:
                return await target.arun(case)
            except RateLimitError as exc:
                attempt += 1
                if attempt > self.max_rate_limit_retries:
                    return Output(error=f"{type(exc).__name__}: {exc}")
                wait = exc.retry_after if exc.retry_after is not None else min(30.0, 0.5 * 2**attempt)
                await asyncio.sleep(wait * (1 + random.random() * 0.1))
            except ProviderError as exc:
                return Output(error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a target bug is recorded against the case, not fatal to the run
                return Output(error=f"{type(exc).__name__}: {exc}")

    @staticmethod
    async def _score(scorer_: Scorer, sample: Sample) -> Score:
        try:
            score = await scorer_.ascore(sample)
        except Exception as exc:  # a scorer crash becomes an unscored case with the reason
            return Score.unscored(scorer_.name, f"scorer failed: {type(exc).__name__}: {exc}")
        if score.value is not None and score.value != score.value:  # NaN never leaks into a report
            return Score.unscored(scorer_.name, "scorer returned NaN", **score.metadata)
        return score


def _fold_scores(
    result: RunResult, case_id: str, error: str | None, cost: float | None, scores: list[Score]
) -> None:
    result.samples += 1
    if error:
        result.errors += 1
    if cost is None:
        result.cost_usd = None
    elif result.cost_usd is not None:
        result.cost_usd += float(cost)
    perturbed = result.perturbed_ids.get(case_id)
    if perturbed is not None:  # kept apart: estimates, gates and baselines see only originals
        original, kind = perturbed
        metrics = result.perturbed_metrics.setdefault(kind, {})
        for score in scores:
            metrics.setdefault(score.scorer, MetricValues()).add(original, score)
        return
    for score in scores:
        result.metrics.setdefault(score.scorer, MetricValues()).add(case_id, score)


def _compact(output: Output) -> Output | dict[str, Any]:
    """The output as stored: retrieved chunks trimmed to their first 300 characters."""
    if not output.hits:
        return output
    data = output.model_dump(mode="json")
    data["hits"] = [
        {
            "source": h.source,
            "chunk_id": h.chunk_id,
            "score": round(h.score, 5),
            "text": h.text[:300],
        }
        for h in output.hits
    ]
    return data
