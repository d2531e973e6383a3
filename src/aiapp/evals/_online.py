"""Online evaluation: user feedback and the eval harness's scorers, applied to live (stored) traces.

User feedback (``aiapp.feedback``, :meth:`aiapp.Gateway.feedback`) is stored and exported the same
way, as a ``user_feedback`` score; it lives in the gateway layer so that serving code need not
import the eval harness.

- :func:`score_traces` (``aiapp traces score``) runs registered scorers (``faithfulness``,
  ``judge_rubric`` ...; judge scorers call their judge route through the gateway) over a
  reproducible sample of stored traces, stores each verdict in the trace store's ``scores`` table
  and exports the scored ones. A scorer that cannot score a trace (no retrieved context, no judge
  route) is stored and reported as *unscored* with its reason: its value is ``NULL``, never 0.

Sampling is by trace id (a hash with the seed), so a re-run with the same ``sample`` and seed picks
the same traces, and traces already scored by a scorer are skipped unless ``rescore`` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from aiapp.errors import InputError
from aiapp.evals._interactions import Interaction, TraceFilter, load_interactions
from aiapp.evals._score import Case, Output, Sample, Score
from aiapp.evals.scorers import Scorer, build_scorer
from aiapp.gateway import run_sync
from aiapp.tracing._feedback import capture_text
from aiapp.types import Hit

if TYPE_CHECKING:
    from aiapp.gateway import Gateway
    from aiapp.tracing import Tracer

ONLINE_SOURCE = "online"


class ScorerReport(BaseModel):
    """One scorer's results over the sampled traces.

    Attributes:
        scorer: The scorer's name.
        scored: Traces it scored.
        unscored: Traces it could not score.
        mean: The mean value over the scored ones (``None`` when none were).
        reasons: Why traces were unscored, with counts.
    """

    scorer: str
    scored: int = 0
    unscored: int = 0
    mean: float | None = None
    reasons: dict[str, int] = Field(default_factory=dict)


class OnlineReport(BaseModel):
    """What an online scoring run did.

    Attributes:
        traces: Traces the filter selected.
        sampled: Traces in the sample.
        skipped: Traces left out before sampling (no content, failed calls ...), by reason.
        already_scored: (trace, scorer) pairs skipped because a score was stored before.
        scorers: Per scorer results.
    """

    traces: int = 0
    sampled: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)
    already_scored: int = 0
    scorers: list[ScorerReport] = Field(default_factory=list)


def in_sample(trace_id: str, fraction: float, seed: int = 0) -> bool:
    """Whether a trace belongs to a ``fraction`` sample (stable per trace id and seed)."""
    if fraction >= 1.0:
        return True
    digest = hashlib.sha256(f"{seed}:{trace_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def sample_for(item: Interaction) -> Sample:
    """The eval sample a scorer sees for a traced interaction.

    The case has no ``expected``: the only answer a trace holds is the one being scored, and a
    reference equal to the answer would grade it against itself. The output's hits are the
    retrieved passages whose text was recovered from the trace.
    """
    hits = [
        Hit(
            text=str(c["text"]),
            source=str(c.get("source") or ""),
            chunk_id=str(c.get("chunk_id") or ""),
            score=float(c.get("score") or 0.0),
        )
        for c in item.context
        if c.get("text")
    ]
    case = Case(
        id=item.trace_id,
        input=item.question,
        metadata={"route": item.route, "prompt": item.prompt, "feedback": item.sign},
    )
    return Sample(case=case, output=Output(text=item.answer, hits=hits, trace_id=item.trace_id))


def score_traces(
    gateway: Gateway,
    scorers: Sequence[str | Scorer],
    *,
    filter: TraceFilter | None = None,
    sample: float = 1.0,
    seed: int = 0,
    judge: str | None = None,
    rescore: bool = False,
    concurrency: int = 4,
    tracer: Tracer | None = None,
) -> OnlineReport:
    """Score a sample of stored traces, store the scores on the traces and export them.

    Args:
        gateway: The gateway: its trace store holds the traces, its exporters get the scores,
            and judge scorers call their judge route through it.
        scorers: Registry names (``faithfulness``, ``judge_rubric`` ...) or scorer objects.
        filter: Which traces (route, time range ...).
        sample: The fraction of selected traces to score, in ``(0, 1]``.
        seed: Seed of the sample.
        judge: The judge route for scorers that take one (default: their own, ``judge``).
        rescore: Score traces a scorer has scored before again.
        concurrency: Traces scored at once.
        tracer: Where the traces are and the scores go (default: the gateway's tracer).

    Raises:
        InputError: a bad ``sample`` or no scorers.
        ConfigError: an unknown scorer or tracing disabled.
    """
    if not 0.0 < sample <= 1.0:
        raise InputError(f"--sample must be in (0, 1], got {sample}")
    if not scorers:
        raise InputError("name at least one scorer (e.g. --scorers faithfulness,judge_rubric)")
    tracer = tracer if tracer is not None else gateway.tracer
    store = tracer.store
    if store is None:
        from aiapp.errors import ConfigError

        raise ConfigError("tracing is disabled, so there are no traces to score", field="tracing.enabled")
    context: dict[str, Any] = {"gateway": gateway}
    if judge is not None:
        context["judge"] = judge
    built = [s if isinstance(s, Scorer) else build_scorer(s, None, **context) for s in scorers]
    items, skipped = load_interactions(store, filter or TraceFilter())
    chosen = [i for i in items if in_sample(i.trace_id, sample, seed)]
    report = OnlineReport(traces=len(items), sampled=len(chosen), skipped=skipped)
    results: dict[str, list[Score]] = {s.name: [] for s in built}
    work: list[tuple[Interaction, Scorer]] = []
    for item in chosen:
        done = {s["name"] for s in item.scores if s["source"] == ONLINE_SOURCE}
        for scorer in built:
            if scorer.name in done and not rescore:
                report.already_scored += 1
            else:
                work.append((item, scorer))

    async def run_all() -> list[Score]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(item: Interaction, scorer: Scorer) -> Score:
            async with gate:
                try:
                    return await scorer.ascore(sample_for(item))
                except Exception as exc:  # a scorer bug leaves this trace unscored, not the run failed
                    return Score.unscored(scorer.name, f"scorer failed: {type(exc).__name__}: {exc}")

        return list(await asyncio.gather(*(one(i, s) for i, s in work)))

    for (item, scorer), score in zip(work, run_sync(run_all()), strict=True):
        results[scorer.name].append(score)
        reason = score.reason or None
        store.add_score(
            item.trace_id,
            scorer.name,
            score.value,
            comment=capture_text(tracer, reason),
            source=ONLINE_SOURCE,
        )
        if score.value is not None:
            tracer.export_score(item.trace_id, scorer.name, score.value, comment=reason, source=ONLINE_SOURCE)
    tracer.flush_exports()
    for scorer in built:
        scores = results[scorer.name]
        values = [s.value for s in scores if s.value is not None]
        reasons: dict[str, int] = {}
        for s in scores:
            if s.value is None:
                reasons[s.reason] = reasons.get(s.reason, 0) + 1
        report.scorers.append(
            ScorerReport(
                scorer=scorer.name,
                scored=len(values),
                unscored=len(scores) - len(values),
                mean=sum(values) / len(values) if values else None,
                reasons=reasons,
            )
        )
    return report
