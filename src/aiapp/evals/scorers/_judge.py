"""LLM-as-judge scorers: a pointwise rubric, a reference check, and pairwise A/B in both orders.

Every judge is a gateway route (``judge`` by default, see ``configs/aiapp.yaml``), called at
temperature 0 so the gateway cache can replay it. The judge must reply with JSON matching a pydantic
schema; a reply that does not parse is sent back with the error, a bounded number of times
(``retries``), and a judge that still fails leaves the case *unscored* with the raw reply kept.

A judge that is not there — no route, the offline ``local/extractive`` model (it selects sentences,
it cannot grade), or a route whose API key is not set — makes the case unscored with the reason,
never a made-up score. Several judges (``judges: [a, b, c]``) vote: the majority decides ``passed``,
the mean of the judges that scored is the ``value``.

A judge is only as good as its agreement with people. A judge scorer can carry ``min_agreement``
and the measured ``agreement`` (Cohen's κ or Krippendorff's α against human ratings, see
:mod:`aiapp.evals.scorers._human`); :attr:`JudgeScorer.may_gate` says whether the gate may use it,
and every score's metadata carries the same facts.

Suite usage::

    scorers:
      - judge_rubric: {criteria: "Answers the question using only the docs.", threshold: 4}
      - judge_reference: {judges: [judge, judge_b, judge_c]}
      - judge_pairwise: {judge: judge, min_agreement: 0.6}
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, field_validator

from aiapp.errors import ConfigError
from aiapp.evals._score import Case, Output, Sample, Score
from aiapp.evals.scorers._base import scorer
from aiapp.evals.scorers._judge_base import (
    JudgeReply,
    JudgeScorer,
    ask_judge,
    block,
    context_text,
    judge_unavailable,
)
from aiapp.evals.scorers._text import references
from aiapp.gateway import run_sync
from aiapp.types import Message

if TYPE_CHECKING:
    from aiapp.gateway import Gateway

__all__ = [
    "DEFAULT_CRITERIA",
    "JudgeReply",
    "JudgeScorer",
    "PairwiseJudge",
    "PairwiseVerdict",
    "ReferenceJudge",
    "ReferenceVerdict",
    "RubricJudge",
    "RubricVerdict",
    "ask_judge",
    "context_text",
    "judge_unavailable",
]

DEFAULT_CRITERIA = (
    "The answer is correct, directly answers the question, is complete enough to act on, "
    "and does not state anything unsupported or made up."
)
DEFAULT_LEVELS = {
    1: "Fails the criteria: wrong, off-topic or empty.",
    2: "Mostly fails: some relevant content but major errors or omissions.",
    3: "Partly meets the criteria: useful but with clear gaps or an error.",
    4: "Meets the criteria with minor issues.",
    5: "Fully meets the criteria.",
}

_SYSTEM = (
    "You are a careful, impartial grader of answers written by an AI assistant. Judge only by the "
    "criteria you are given, not by length or style. Reply with one JSON object and nothing else."
)


# -- judge reply schemas ------------------------------------------------------------------------


class RubricVerdict(BaseModel):
    """A pointwise judge's reply: reasoning first (it helps the grade), then a 1–5 score."""

    reasoning: str
    score: int = Field(ge=1, le=5)


class ReferenceVerdict(BaseModel):
    """A reference-based judge's reply: is the answer correct given the reference?"""

    reasoning: str
    verdict: Literal["yes", "partial", "no"]

    @field_validator("verdict", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class PairwiseVerdict(BaseModel):
    """A pairwise judge's reply: which of two responses is better (``1``, ``2`` or ``tie``)."""

    reasoning: str
    winner: Literal["1", "2", "tie"]

    @field_validator("winner", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):
            text = value.strip().lower().removeprefix("response").strip()
            return text
        return value


def _levels(levels: Mapping[int | str, str] | None) -> dict[int, str]:
    if levels is None:
        return dict(DEFAULT_LEVELS)
    out: dict[int, str] = {}
    for key, text in levels.items():
        try:
            level = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"rubric level {key!r} is not a number 1–5", field="scorers.levels") from None
        if not 1 <= level <= 5:
            raise ConfigError(f"rubric level {level} is outside 1–5", field="scorers.levels")
        out[level] = str(text)
    return out


# -- pointwise rubric ---------------------------------------------------------------------------


@scorer("judge_rubric")
class RubricJudge(JudgeScorer):
    """Pointwise 1–5 grading against written criteria; value ``(score - 1) / 4``.

    Args:
        criteria: What a good answer does, in words.
        levels: Optional description of each level ``{1: "...", ..., 5: "..."}``.
        threshold: The raw 1–5 score at or above which a case passes (default 4).
        include_reference: Show the case's expected answer to the judge when there is one.
        include_context: Show the retrieved passages to the judge.
        **judge_options: ``gateway``, ``judge``, ``judges``, ``retries``, ``min_agreement``,
            ``agreement`` (see :class:`JudgeScorer`).
    """

    def __init__(
        self,
        *,
        criteria: str = DEFAULT_CRITERIA,
        levels: Mapping[int | str, str] | None = None,
        threshold: float = 4,
        include_reference: bool = True,
        include_context: bool = False,
        gateway: Gateway | None = None,
        judge: str = "judge",
        judges: Sequence[str] | None = None,
        retries: int = 1,
        min_agreement: float | None = None,
        agreement: float | None = None,
    ) -> None:
        super().__init__(
            gateway=gateway,
            judge=judge,
            judges=judges,
            retries=retries,
            min_agreement=min_agreement,
            agreement=agreement,
        )
        if not 1 <= threshold <= 5:
            raise ConfigError(f"threshold {threshold} is outside the 1–5 scale", field="scorers.threshold")
        self.criteria = criteria
        self.levels = _levels(levels)
        self.raw_threshold = threshold
        self.threshold = (threshold - 1) / 4
        self.include_reference = include_reference
        self.include_context = include_context

    def messages(self, sample: Sample) -> list[Message]:
        """The judge prompt for a sample."""
        levels = "\n".join(f"{level}: {self.levels[level]}" for level in sorted(self.levels))
        parts = [
            "Grade the answer on a scale of 1 to 5 against the criteria.",
            block("criteria", self.criteria),
            block("score_levels", levels),
            block("question", sample.case.question),
        ]
        refs = references(sample.case.expected) if self.include_reference else []
        if refs:
            parts.append(block("reference_answer", "\n".join(refs)))
        if self.include_context and sample.output.hits:
            parts.append(block("context", context_text(sample.output)))
        parts.append(block("answer", sample.output.text or "(empty answer)"))
        parts.append('Reply with JSON: {"reasoning": "<one or two sentences>", "score": <integer 1-5>}')
        return [Message.system(_SYSTEM), Message.user("\n\n".join(parts))]

    async def judge_once(self, route: str, sample: Sample) -> Score:
        """Ask one judge for a 1–5 grade."""
        assert self.gateway is not None  # checked by judge_unavailable
        reply = await ask_judge(
            self.gateway, route, self.messages(sample), RubricVerdict, retries=self.retries
        )
        if reply.parsed is None:
            return self.failed(reply)
        raw = reply.parsed.score
        return self.make(
            (raw - 1) / 4,
            reply.parsed.reasoning,
            raw_score=raw,
            raw_threshold=self.raw_threshold,
            model=reply.model,
            attempts=reply.attempts,
        )


# -- reference-based ----------------------------------------------------------------------------

_VERDICT_VALUE = {"yes": 1.0, "partial": 0.5, "no": 0.0}


@scorer("judge_reference")
class ReferenceJudge(JudgeScorer):
    """Is the answer correct given the reference answer? yes → 1, partial → 0.5, no → 0.

    Args:
        threshold: Value at or above which a case passes (default 1: only a full "yes").
        **judge_options: ``gateway``, ``judge``, ``judges``, ``retries``, ``min_agreement``,
            ``agreement`` (see :class:`JudgeScorer`).
    """

    def __init__(
        self,
        *,
        threshold: float = 1.0,
        gateway: Gateway | None = None,
        judge: str = "judge",
        judges: Sequence[str] | None = None,
        retries: int = 1,
        min_agreement: float | None = None,
        agreement: float | None = None,
    ) -> None:
        super().__init__(
            gateway=gateway,
            judge=judge,
            judges=judges,
            retries=retries,
            min_agreement=min_agreement,
            agreement=agreement,
        )
        self.threshold = threshold

    def missing_input(self, sample: Sample) -> str | None:
        """A reference answer is needed."""
        return None if references(sample.case.expected) else "case has no reference answer (expected)"

    def messages(self, sample: Sample) -> list[Message]:
        """The judge prompt for a sample."""
        parts = [
            "Decide whether the answer is correct given the reference answer. Wording may differ; "
            "judge the substance. yes: it says what the reference says (extra correct detail is fine). "
            "partial: part of it is right, or it is incomplete. no: it is wrong, contradicts the "
            "reference, or does not answer.",
            block("question", sample.case.question),
            block("reference_answer", "\n".join(references(sample.case.expected))),
            block("answer", sample.output.text or "(empty answer)"),
            'Reply with JSON: {"reasoning": "<one or two sentences>", "verdict": "yes" | "partial" | "no"}',
        ]
        return [Message.system(_SYSTEM), Message.user("\n\n".join(parts))]

    async def judge_once(self, route: str, sample: Sample) -> Score:
        """Ask one judge for a verdict."""
        assert self.gateway is not None
        reply = await ask_judge(
            self.gateway, route, self.messages(sample), ReferenceVerdict, retries=self.retries
        )
        if reply.parsed is None:
            return self.failed(reply)
        verdict = reply.parsed.verdict
        return self.make(
            _VERDICT_VALUE[verdict],
            reply.parsed.reasoning,
            verdict=verdict,
            model=reply.model,
            attempts=reply.attempts,
        )


# -- pairwise -----------------------------------------------------------------------------------


@scorer("judge_pairwise")
class PairwiseJudge(JudgeScorer):
    """Pairwise A/B, asked in both orders to cancel the judge's position bias.

    The judge sees (A, B) and then (B, A). Preferring the same response both times is a win or a
    loss; anything else (a flip, or a tie) is a tie. Value: 1 when A wins, 0 when B wins, 0.5 for a
    tie. As the scorer ``judge_pairwise`` it compares the output (A) against the reference answer
    (B), so 1 means "better than the reference" and a tie passes.

    Args:
        criteria: What makes one response better than another.
        threshold: Value at or above which a case passes (default 0.5: at least a tie).
        **judge_options: ``gateway``, ``judge``, ``judges``, ``retries``, ``min_agreement``,
            ``agreement`` (see :class:`JudgeScorer`).
    """

    def __init__(
        self,
        *,
        criteria: str = DEFAULT_CRITERIA,
        threshold: float = 0.5,
        gateway: Gateway | None = None,
        judge: str = "judge",
        judges: Sequence[str] | None = None,
        retries: int = 1,
        min_agreement: float | None = None,
        agreement: float | None = None,
    ) -> None:
        super().__init__(
            gateway=gateway,
            judge=judge,
            judges=judges,
            retries=retries,
            min_agreement=min_agreement,
            agreement=agreement,
        )
        self.criteria = criteria
        self.threshold = threshold

    def missing_input(self, sample: Sample) -> str | None:
        """The reference answer is the B side."""
        return None if references(sample.case.expected) else "case has no reference answer to compare with"

    async def acompare(self, case: Case, output_a: Output, output_b: Output) -> Score:
        """Compare two outputs for one case; 1 = A better, 0 = B better, 0.5 = tie."""
        for label, output in (("A", output_a), ("B", output_b)):
            if output.error is not None:
                return self.unscored(f"output {label} failed: {output.error}", **self.gate_info())
        return await self.run_judges(lambda route: self._compare_once(route, case, output_a, output_b))

    def compare(self, case: Case, output_a: Output, output_b: Output) -> Score:
        """Sync :meth:`acompare`."""
        return run_sync(self.acompare(case, output_a, output_b))

    async def judge_once(self, route: str, sample: Sample) -> Score:
        """Compare the output with the reference answer."""
        reference = Output(text="\n".join(references(sample.case.expected)))
        return await self._compare_once(route, sample.case, sample.output, reference)

    def messages(self, case: Case, first: str, second: str) -> list[Message]:
        """The judge prompt with two responses in a given order."""
        parts = [
            "Compare two responses to the same question and decide which one better meets the "
            "criteria. The order of the responses says nothing about their quality. Answer tie when "
            "neither is better.",
            block("criteria", self.criteria),
            block("question", case.question),
            block("response_1", first or "(empty response)"),
            block("response_2", second or "(empty response)"),
            'Reply with JSON: {"reasoning": "<one or two sentences>", "winner": "1" | "2" | "tie"}',
        ]
        return [Message.system(_SYSTEM), Message.user("\n\n".join(parts))]

    async def _compare_once(self, route: str, case: Case, a: Output, b: Output) -> Score:
        assert self.gateway is not None
        ab, ba = await asyncio.gather(
            ask_judge(
                self.gateway,
                route,
                self.messages(case, a.text, b.text),
                PairwiseVerdict,
                retries=self.retries,
            ),
            ask_judge(
                self.gateway,
                route,
                self.messages(case, b.text, a.text),
                PairwiseVerdict,
                retries=self.retries,
            ),
        )
        for reply in (ab, ba):
            if reply.parsed is None:
                failed = self.failed(reply)
                return failed.model_copy(update={"reason": f"needs verdicts in both orders: {failed.reason}"})
        assert ab.parsed is not None and ba.parsed is not None
        first = {"1": "A", "2": "B", "tie": "tie"}[ab.parsed.winner]  # A was shown first
        second = {"1": "B", "2": "A", "tie": "tie"}[ba.parsed.winner]  # B was shown first
        if first == second and first != "tie":
            outcome, value = first, (1.0 if first == "A" else 0.0)
            reason = f"{first} preferred in both orders"
        else:
            outcome, value = "tie", 0.5
            reason = "tie in both orders" if first == second else f"inconsistent ({first} then {second}): tie"
        verdicts = [
            {"order": "AB", "winner": first, "reasoning": ab.parsed.reasoning, "attempts": ab.attempts},
            {"order": "BA", "winner": second, "reasoning": ba.parsed.reasoning, "attempts": ba.attempts},
        ]
        return self.make(
            value,
            reason,
            outcome=outcome,
            verdicts=verdicts,
            consistent=first == second,
            position_bias=ab.parsed.winner == ba.parsed.winner != "tie",
            model=ab.model or ba.model,
        )
