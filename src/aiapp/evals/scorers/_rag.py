"""RAG metrics, native: faithfulness, answer relevancy, context precision and context recall.

Each metric reads the case (question, reference answer in ``expected``) and the output (answer text,
retrieved ``hits``). With a judge route available (``method: auto``, the default, or ``judge``) an
LLM decides, item by item, whether a statement is supported or a passage is relevant; without one,
``auto`` falls back to a lexical check (content-word coverage, numbers must match) and says so in
``metadata["method"]``, so a report never mixes the two silently. ``answer_relevancy`` uses
embedding similarity by default (the local MiniLM, offline).

A metric that lacks its inputs is unscored with the reason: no retrieved context, no reference
answer, an empty answer or an answer that abstains ("I could not find an answer...").

The definitions follow ragas (Es et al., 2023) where it is clear:

- faithfulness: share of the answer's statements supported by the retrieved context;
- answer_relevancy: how well the answer addresses the question;
- context_precision: share of retrieved passages relevant to the question (and reference);
- context_recall: share of the reference answer's statements supported by the retrieved context.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from aiapp.errors import ConfigError
from aiapp.evals._score import Sample, Score
from aiapp.evals.scorers._base import Scorer, scorer
from aiapp.evals.scorers._judge import RubricVerdict
from aiapp.evals.scorers._judge_base import ask_judge, context_text, judge_unavailable
from aiapp.evals.scorers._text import normalize_answer, numbers, references
from aiapp.gateway import run_sync
from aiapp.types import Hit, Message

if TYPE_CHECKING:
    from aiapp.gateway import Gateway
    from aiapp.gateway.embedders import Embedder

Method = Literal["auto", "judge", "lexical"]

_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves also may might must shall use used using get gets via
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_CITATION = re.compile(r"\[\d+(?:\s*[,;-]\s*\d+)*\]")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.M)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9`])|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")
_ABSTAIN = re.compile(
    r"\b(could ?n[o']t find|cannot answer|can't answer|unable to (?:find|answer)|do ?n[o']t know|"
    r"no context was provided|not (?:mentioned|stated|covered) in the (?:provided )?(?:context|documents))\b",
    re.IGNORECASE,
)


# -- text helpers -------------------------------------------------------------------------------


def split_statements(text: str) -> list[str]:
    """Split an answer into sentence-sized statements (citations and bullets removed)."""
    cleaned = _BULLET.sub("", _CITATION.sub("", text))
    pieces = (" ".join(p.split()) for p in _SENTENCE_END.split(cleaned))
    return [p for p in pieces if p and content_terms(p)]


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_terms(text: str) -> set[str]:
    """Normalized, crudely stemmed content words (stopwords dropped)."""
    return {_stem(w) for w in normalize_answer(text).split() if w not in _STOPWORDS}


def lexical_support(statement: str, passage: str) -> float:
    """Share of the statement's content words found in the passage; 0 when a number is missing."""
    terms = content_terms(statement)
    if not terms:
        return 0.0
    wanted = set(numbers(statement))
    if wanted and not wanted <= set(numbers(passage)):
        return 0.0
    return len(terms & content_terms(passage)) / len(terms)


def abstains(answer: str) -> bool:
    """Whether a short answer only says it cannot answer."""
    return len(split_statements(answer)) <= 2 and bool(_ABSTAIN.search(answer))


# -- judge replies ------------------------------------------------------------------------------


class ItemVerdict(BaseModel):
    """The judge's decision on one numbered item."""

    index: int
    reasoning: str = ""
    verdict: bool


class ItemVerdicts(BaseModel):
    """One verdict per numbered item."""

    verdicts: list[ItemVerdict]


def _check_indices(count: int) -> Any:
    def check(reply: ItemVerdicts) -> str | None:
        got = sorted(v.index for v in reply.verdicts)
        if got != list(range(1, count + 1)):
            return f"expected exactly one verdict for each item 1..{count}, got indices {got}"
        return None

    return check


_ITEMS_SYSTEM = (
    "You are a careful, literal fact checker for a retrieval-augmented assistant. Use only the "
    "information given, not your own knowledge. Reply with one JSON object and nothing else."
)


# -- the base -----------------------------------------------------------------------------------


class RagScorer(Scorer):
    """Shared plumbing: method choice, judge calls, context handling.

    Args:
        method: ``auto`` (judge when available, else lexical), ``judge`` or ``lexical``.
        gateway: The gateway serving the judge route (runner context).
        judge: The judge route.
        retries: Re-asks after an unusable judge reply.
        threshold: Value at or above which a case passes (none by default).
        support: Lexical coverage at or above which a statement counts as supported.
        k: Use only the top ``k`` hits (all by default).
        max_context_chars: Context shown to the judge.
    """

    def __init__(
        self,
        *,
        method: Method = "auto",
        gateway: Gateway | None = None,
        judge: str = "judge",
        retries: int = 1,
        threshold: float | None = None,
        support: float = 0.6,
        k: int | None = None,
        max_context_chars: int = 12_000,
    ) -> None:
        if method not in ("auto", "judge", "lexical"):
            raise ConfigError(
                f"method must be auto, judge or lexical, not {method!r}", field="scorers.method"
            )
        if k is not None and k < 1:
            raise ConfigError("k must be at least 1", field="scorers.k")
        self.method = method
        self.gateway = gateway
        self.judge = judge
        self.retries = retries
        self.threshold = threshold
        self.support = support
        self.k = k
        self.max_context_chars = max_context_chars
        self.calls_models = method == "judge" or (
            method == "auto" and judge_unavailable(gateway, judge) is None
        )

    def score(self, sample: Sample) -> Score:
        """Sync :meth:`ascore`."""
        return run_sync(self.ascore(sample))

    def hits(self, sample: Sample) -> list[Hit]:
        """The retrieved passages this metric looks at."""
        return sample.output.hits[: self.k] if self.k else list(sample.output.hits)

    def choose(self) -> tuple[str, str | None]:
        """``("judge" | "lexical", why the judge is not used)``; ``judge`` with a reason means unscored."""
        if self.method == "lexical":
            return "lexical", None
        why = judge_unavailable(self.gateway, self.judge)
        if why is None:
            return "judge", None
        return ("judge", why) if self.method == "judge" else ("lexical", why)

    async def judge_items(
        self, instruction: str, blocks: Sequence[tuple[str, str]], items: Sequence[str], label: str
    ) -> list[ItemVerdict] | Score:
        """Ask the judge for a yes/no verdict on each numbered item; unscored on failure."""
        assert self.gateway is not None
        numbered = "\n".join(f"{n}. {item}" for n, item in enumerate(items, start=1))
        parts = [instruction]
        parts += [f"<{tag}>\n{text.strip()}\n</{tag}>" for tag, text in blocks]
        parts.append(f"<{label}>\n{numbered}\n</{label}>")
        parts.append(
            'Reply with JSON: {"verdicts": [{"index": 1, "reasoning": "<short>", "verdict": true}, ...]} '
            f"with exactly one entry for each of the {len(items)} numbered {label}."
        )
        reply = await ask_judge(
            self.gateway,
            self.judge,
            [Message.system(_ITEMS_SYSTEM), Message.user("\n\n".join(parts))],
            ItemVerdicts,
            retries=self.retries,
            check=_check_indices(len(items)),
        )
        if reply.parsed is None:
            return self.unscored(
                reply.error or "judge failed",
                method="judge",
                judge=self.judge,
                raw=reply.raw,
                attempts=reply.attempts,
                parse_errors=reply.errors,
            )
        return sorted(reply.parsed.verdicts, key=lambda v: v.index)

    def context(self, sample: Sample) -> str:
        """The hits as numbered passages for the judge."""
        return context_text(
            sample.output.model_copy(update={"hits": self.hits(sample)}), max_chars=self.max_context_chars
        )

    async def statements_supported(
        self, sample: Sample, statements: list[str], what: str
    ) -> tuple[list[dict[str, Any]], str, str | None] | Score:
        """Decide, per statement, whether the retrieved context supports it."""
        method, why = self.choose()
        if method == "judge" and why is not None:
            return self.unscored(why, method="judge")
        if method == "judge":
            verdicts = await self.judge_items(
                f"For each numbered statement from {what}, decide whether the context supports it. "
                "true: the context states it or it follows directly from the context. false: the "
                "context does not mention it or contradicts it.",
                [("context", self.context(sample))],
                statements,
                "statements",
            )
            if isinstance(verdicts, Score):
                return verdicts
            rows = [
                {"statement": s, "supported": v.verdict, "reasoning": v.reasoning}
                for s, v in zip(statements, verdicts, strict=True)
            ]
            return rows, method, None
        hits = self.hits(sample)
        rows = []
        for statement in statements:
            coverage, best = max(
                ((lexical_support(statement, h.text), h.source) for h in hits), key=lambda x: x[0]
            )
            rows.append(
                {
                    "statement": statement,
                    "supported": coverage >= self.support,
                    "coverage": round(coverage, 3),
                    "source": best if coverage > 0 else None,
                }
            )
        return rows, method, why

    def _result(
        self, rows: list[dict[str, Any]], key: str, noun: str, method: str, why: str | None, **extra: Any
    ) -> Score:
        good = sum(1 for r in rows if r[key])
        metadata: dict[str, Any] = {"method": method, "items": rows, **extra}
        if method == "judge":
            metadata["judge"] = self.judge
        if why is not None:
            metadata["judge_unavailable"] = why
        label = " (lexical fallback)" if method == "lexical" and self.method == "auto" else ""
        return self.make(good / len(rows), f"{good}/{len(rows)} {noun}{label}", **metadata)


# -- metrics ------------------------------------------------------------------------------------


@scorer("faithfulness")
class Faithfulness(RagScorer):
    """Share of the answer's statements supported by the retrieved context (``output.hits``)."""

    async def ascore(self, sample: Sample) -> Score:
        """Split the answer into statements and check each against the context."""
        if sample.output.error is not None:
            return self.unscored(f"target failed: {sample.output.error}")
        if not self.hits(sample):
            return self.unscored("no retrieved context (output.hits is empty): nothing to be faithful to")
        answer = sample.output.text
        if not answer.strip():
            return self.unscored("empty answer: no statements to check")
        if abstains(answer):
            return self.unscored("the answer abstains: no statements to check", abstained=True)
        statements = split_statements(answer)
        if not statements:
            return self.unscored("the answer has no checkable statements")
        checked = await self.statements_supported(sample, statements, "an answer")
        if isinstance(checked, Score):
            return checked
        rows, method, why = checked
        return self._result(rows, "supported", "answer statements supported by the context", method, why)


@scorer("context_recall")
class ContextRecall(RagScorer):
    """Share of the reference answer's statements supported by the retrieved context."""

    async def ascore(self, sample: Sample) -> Score:
        """Split the reference into statements and check each against the context."""
        if sample.output.error is not None:
            return self.unscored(f"target failed: {sample.output.error}")
        refs = references(sample.case.expected)
        if not refs:
            return self.unscored("case has no reference answer (expected): context recall needs one")
        if not self.hits(sample):
            return self.unscored("no retrieved context (output.hits is empty)", retrieved=0)
        statements = [s for ref in refs for s in split_statements(ref)]
        if not statements:
            return self.unscored("the reference answer has no checkable statements")
        checked = await self.statements_supported(sample, statements, "a reference answer")
        if isinstance(checked, Score):
            return checked
        rows, method, why = checked
        return self._result(rows, "supported", "reference statements found in the context", method, why)


@scorer("context_precision")
class ContextPrecision(RagScorer):
    """Share of retrieved passages relevant to the question (and reference answer, when there is one).

    ``metadata["average_precision"]`` adds the rank-aware variant ragas reports (mean precision@i
    over the relevant positions). The lexical fallback needs a reference answer: a passage counts as
    relevant when it covers one of the reference's statements.
    """

    async def ascore(self, sample: Sample) -> Score:
        """Decide, per passage, whether it is relevant."""
        if sample.output.error is not None:
            return self.unscored(f"target failed: {sample.output.error}")
        hits = self.hits(sample)
        if not hits:
            return self.unscored("no retrieved context (output.hits is empty)")
        refs = references(sample.case.expected)
        method, why = self.choose()
        if method == "judge" and why is not None:
            return self.unscored(why, method="judge")
        if method == "judge":
            blocks = [("question", sample.case.question)]
            if refs:
                blocks.append(("reference_answer", "\n".join(refs)))
            passages = [f"({h.source}) {' '.join(h.text.split())}"[: self.max_context_chars] for h in hits]
            verdicts = await self.judge_items(
                "For each numbered passage, decide whether it is useful for answering the question"
                + (" (the reference answer shows what a correct answer needs)" if refs else "")
                + ". true: it contains information the answer needs. false: it does not.",
                blocks,
                passages,
                "passages",
            )
            if isinstance(verdicts, Score):
                return verdicts
            rows = [
                {"rank": n, "source": h.source, "relevant": v.verdict, "reasoning": v.reasoning}
                for n, (h, v) in enumerate(zip(hits, verdicts, strict=True), start=1)
            ]
        else:
            if not refs:
                return self.unscored(
                    "context precision without a judge needs a reference answer (expected)",
                    method="lexical",
                    judge_unavailable=why,
                )
            statements = [s for ref in refs for s in split_statements(ref)] or refs
            rows = []
            for n, hit in enumerate(hits, start=1):
                coverage = max(lexical_support(s, hit.text) for s in statements)
                rows.append(
                    {
                        "rank": n,
                        "source": hit.source,
                        "relevant": coverage >= self.support,
                        "coverage": round(coverage, 3),
                    }
                )
        return self._result(
            rows,
            "relevant",
            "retrieved passages relevant",
            method,
            why,
            average_precision=average_precision([bool(r["relevant"]) for r in rows]),
        )


def average_precision(relevant: Sequence[bool]) -> float:
    """Mean of precision@i over the ranks i that are relevant (0 when none is)."""
    found, total = 0, 0.0
    for rank, ok in enumerate(relevant, start=1):
        if ok:
            found += 1
            total += found / rank
    return total / found if found else 0.0


@scorer("answer_relevancy")
class AnswerRelevancy(Scorer):
    """How well the answer addresses the question (not whether it is correct).

    ``method: embedding`` (default, offline): cosine similarity of question and answer embeddings,
    clipped to [0, 1]. ``method: judge``: a 1–5 judge grade normalized to [0, 1].

    Args:
        method: ``embedding`` or ``judge``.
        embedder: An embedder name for :func:`aiapp.gateway.embedders.build_embedder`, or an embedder.
        threshold: Value at or above which a case passes (none by default).
        gateway: The gateway serving the judge route (runner context).
        judge: The judge route.
        retries: Re-asks after an unusable judge reply.
    """

    def __init__(
        self,
        *,
        method: Literal["embedding", "judge"] = "embedding",
        embedder: str | Embedder | None = None,
        threshold: float | None = None,
        gateway: Gateway | None = None,
        judge: str = "judge",
        retries: int = 1,
    ) -> None:
        if method not in ("embedding", "judge"):
            raise ConfigError(f"method must be embedding or judge, not {method!r}", field="scorers.method")
        self.method = method
        self.threshold = threshold
        self.gateway = gateway
        self.judge = judge
        self.retries = retries
        self.calls_models = method == "judge"
        self._embedder_spec = embedder
        self._embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        """The embedder (built on first use; the local model loads lazily)."""
        if self._embedder is None:
            from aiapp.gateway.embedders import DEFAULT_EMBEDDER, Embedder, build_embedder

            spec = self._embedder_spec
            self._embedder = spec if isinstance(spec, Embedder) else build_embedder(spec or DEFAULT_EMBEDDER)
        return self._embedder

    def score(self, sample: Sample) -> Score:
        """Sync :meth:`ascore`."""
        return run_sync(self.ascore(sample))

    async def ascore(self, sample: Sample) -> Score:
        """Embed or judge question and answer."""
        if sample.output.error is not None:
            return self.unscored(f"target failed: {sample.output.error}")
        question, answer = sample.case.question.strip(), sample.output.text.strip()
        if not question:
            return self.unscored("case has no question")
        if not answer:
            return self.make(0.0, "empty answer", method=self.method)
        if self.method == "embedding":
            vectors = await self.embedder.aembed([question, answer])
            cosine = float(vectors[0] @ vectors[1])
            return self.make(
                min(1.0, max(0.0, cosine)),
                f"cosine {cosine:.2f}",
                method="embedding",
                embedder=self.embedder.name,
            )
        why = judge_unavailable(self.gateway, self.judge)
        if why is not None:
            return self.unscored(why, method="judge")
        assert self.gateway is not None
        prompt = (
            "Grade how well the answer addresses the question on a scale of 1 to 5. Judge relevance "
            "only, not correctness: 1 = off-topic or evasive, 3 = partly addresses it, 5 = directly and "
            "fully addresses what was asked.\n\n"
            f"<question>\n{question}\n</question>\n\n<answer>\n{answer}\n</answer>\n\n"
            'Reply with JSON: {"reasoning": "<one or two sentences>", "score": <integer 1-5>}'
        )
        reply = await ask_judge(
            self.gateway,
            self.judge,
            [Message.system(_ITEMS_SYSTEM), Message.user(prompt)],
            RubricVerdict,
            retries=self.retries,
        )
        if reply.parsed is None:
            return self.unscored(
                reply.error or "judge failed", method="judge", raw=reply.raw, attempts=reply.attempts
            )
        raw = reply.parsed.score
        return self.make(
            (raw - 1) / 4, reply.parsed.reasoning, method="judge", raw_score=raw, judge=self.judge
        )
