"""The ragas adapter (extra ``aiapp[ragas]``): ragas metrics mapped onto the same :class:`Score`.

The only module of aiapp that imports ragas. It sets ``RAGAS_DO_NOT_TRACK=true`` before the import
(ragas sends usage analytics otherwise) and imports lazily, when a ragas scorer is built, because
ragas pulls langchain, pandas and pyarrow.

ragas's model calls go through aiapp's gateway: :func:`gateway_llm` wraps a judge route as a ragas
``InstructorBaseRagasLLM`` (JSON replies parsed against ragas's own schemas, with aiapp's bounded
retry), and :func:`gateway_embeddings` wraps an aiapp embedder. So the calls are traced, cached and
costed like every other call, and tests drive ragas with ``FakeModel``.

ragas returns NaN when it cannot compute a metric (no statements extracted, every verdict missing),
and ``answer_relevancy`` returns 0.0 when the judge generated no question. Both become unscored
results, never NaN or 0: the reason is ragas's own (``MetricResult.reason``) when it gives one, else
what the judge's replies show (each ragas step is logged per score, see :class:`RagasStep`). Every
score's metadata says how many model calls ragas made (``judge_calls``) and which steps it ran.

Suite usage::

    scorers:
      - ragas_faithfulness: {judge: judge}
      - ragas: {metric: context_recall}
"""

from __future__ import annotations

import math
import os
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiapp.errors import ConfigError
from aiapp.evals._score import Sample, Score
from aiapp.evals.scorers._base import Scorer, scorer
from aiapp.evals.scorers._judge_base import JudgeReply, ask_judge, judge_unavailable
from aiapp.evals.scorers._text import references
from aiapp.gateway import run_sync
from aiapp.types import Message

if TYPE_CHECKING:
    from aiapp.gateway import Gateway
    from aiapp.gateway.embedders import Embedder

#: aiapp metric name → ragas ``metrics.collections`` class, and what it needs.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "faithfulness": ("Faithfulness", ("response", "contexts")),
    "answer_relevancy": ("AnswerRelevancy", ("response",)),
    "context_precision": ("ContextPrecisionWithReference", ("contexts", "reference")),
    "context_recall": ("ContextRecall", ("contexts", "reference")),
}
INSTALL_HINT = "the ragas scorers need the ragas extra: pip install 'aiapp[ragas]'"
DO_NOT_TRACK = "RAGAS_DO_NOT_TRACK"


@dataclass(frozen=True)
class RagasStep:
    """One structured call ragas made through the judge route while scoring a sample.

    Attributes:
        schema: The ragas reply schema asked for (e.g. ``StatementGeneratorOutput``).
        attempts: Model calls it took (1 + re-asks after unusable replies).
        parsed: The validated reply, or ``None`` when the judge failed.
    """

    schema: str
    attempts: int
    parsed: Any = None


#: The steps of the sample being scored (one list per :meth:`RagasScorer.ascore`, so concurrent
#: cases sharing one ragas metric object do not mix their logs).
_STEPS: ContextVar[list[RagasStep] | None] = ContextVar("aiapp_ragas_steps", default=None)


class RagasJudgeError(Exception):
    """Raised inside ragas when the judge gave no usable reply; carries the reply for the report."""

    def __init__(self, reply: JudgeReply[Any]) -> None:
        self.reply = reply
        super().__init__(reply.error or "judge failed")


def import_ragas() -> Any:
    """Import ragas with its analytics switched off.

    Raises:
        ConfigError: ragas is not installed.
    """
    os.environ[DO_NOT_TRACK] = "true"  # before the import: ragas caches the flag
    try:
        import ragas
        import ragas._analytics
        import ragas.metrics.collections
    except ImportError as exc:
        raise ConfigError(f"{INSTALL_HINT} ({exc})", field="scorers") from exc
    # ragas caches the flag on first use (lru_cache): if anything asked before the variable was
    # set (ragas imported by the user first), drop the stale answer so tracking stays off.
    flag = ragas._analytics.do_not_track
    if not flag():
        flag.cache_clear()
    if not flag():  # pragma: no cover - only if ragas changes how it reads the flag
        raise ConfigError(f"could not switch off ragas analytics ({DO_NOT_TRACK})", field="scorers")
    return ragas


def explain_nan(metric: str, steps: list[RagasStep]) -> str:
    """Why ragas could not compute ``metric``, from the judge replies it got (``steps``)."""
    for step in steps:
        parsed = step.parsed
        if step.schema == "StatementGeneratorOutput" and not getattr(parsed, "statements", True):
            return "the judge extracted no statements from the answer, so there is nothing to check"
        if step.schema == "NLIStatementOutput" and not getattr(parsed, "statements", True):
            return "the judge returned no verdict for any of the answer's statements"
        if step.schema == "ContextRecallOutput" and not getattr(parsed, "classifications", True):
            return "the judge classified none of the reference answer's statements"
    asked = ", ".join(step.schema for step in steps) or "no judge call"
    return f"ragas {metric} returned no number ({asked})"


def no_questions(steps: list[RagasStep]) -> bool:
    """Whether every answer-relevancy step came back without a generated question."""
    generated = [s for s in steps if s.schema == "AnswerRelevanceOutput"]
    return bool(generated) and not any(getattr(s.parsed, "question", "") for s in generated)


def to_score(
    name: str,
    value: Any,
    reason: str | None = None,
    *,
    threshold: float | None = None,
    why_unscored: str | None = None,
    **metadata: Any,
) -> Score:
    """A ragas result value as a :class:`Score`: NaN, None or a non-number become unscored.

    Args:
        name: The scorer name.
        value: What ragas returned.
        reason: ragas's reason (``MetricResult.reason``), kept on scored and unscored results.
        threshold: Value at or above which the case passes.
        why_unscored: Why ragas could not compute it, when known (see :func:`explain_nan`).
        **metadata: Added to the score's metadata.
    """
    number: float | None
    try:
        number = float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number):
        because = (
            why_unscored
            or reason
            or (
                "it could not compute the metric, e.g. no statements could be extracted or the judge's "
                "verdicts were missing"
            )
        )
        return Score.unscored(
            name,
            f"ragas returned {value!r} instead of a score: {because}",
            ragas_value=repr(value),
            **metadata,
        )
    passed = None if threshold is None else number >= threshold
    return Score(scorer=name, value=number, passed=passed, reason=reason or "", metadata=metadata)


def gateway_llm(gateway: Gateway, route: str, *, retries: int = 1) -> Any:
    """A ragas ``InstructorBaseRagasLLM`` that answers through an aiapp gateway route.

    Each ragas request is one :func:`~aiapp.evals.scorers._judge_base.ask_judge` call: temperature 0,
    ragas's reply model as the ``response_format``, re-asked up to ``retries`` times when the reply
    does not parse. ``calls`` counts the model calls made; a judge that never gives a usable reply
    raises :class:`RagasJudgeError` inside ragas, which the scorer turns into an unscored result.
    """
    import_ragas()
    from ragas.llms.base import InstructorBaseRagasLLM

    class GatewayRagasLLM(InstructorBaseRagasLLM):  # type: ignore[misc,unused-ignore]  # Any without the extra
        """ragas structured generation over the aiapp gateway (temperature 0, bounded retry)."""

        def __init__(self) -> None:
            self.gateway = gateway
            self.route = route
            self.retries = retries
            self.calls = 0

        async def agenerate(self, prompt: str, response_model: Any) -> Any:
            reply = await ask_judge(
                self.gateway, self.route, [Message.user(prompt)], response_model, retries=self.retries
            )
            self.calls += reply.attempts
            steps = _STEPS.get()
            if steps is not None:
                steps.append(RagasStep(response_model.__name__, reply.attempts, reply.parsed))
            if reply.parsed is None:
                raise RagasJudgeError(reply)
            return reply.parsed

        def generate(self, prompt: str, response_model: Any) -> Any:
            return run_sync(self.agenerate(prompt, response_model))

    return GatewayRagasLLM()


def gateway_embeddings(embedder: Embedder) -> Any:
    """A ragas ``BaseRagasEmbedding`` over an aiapp embedder (e.g. the default local ONNX MiniLM).

    ragas embeds the question as a query and its generated questions in one batch; vectors come
    back as plain float lists, the type ragas expects.
    """
    import_ragas()
    from ragas.embeddings.base import BaseRagasEmbedding

    class AiappRagasEmbedding(BaseRagasEmbedding):  # type: ignore[misc,unused-ignore]  # Any without the extra
        """ragas embeddings from an aiapp :class:`~aiapp.gateway.embedders.Embedder`."""

        def __init__(self) -> None:
            super().__init__(cache=None)
            self.embedder = embedder

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return [float(x) for x in embedder.embed([text], kind="query")[0]]

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return [float(x) for x in (await embedder.aembed([text], kind="query"))[0]]

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return [[float(x) for x in row] for row in embedder.embed(texts, kind="query")]

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return [[float(x) for x in row] for row in await embedder.aembed(texts, kind="query")]

    return AiappRagasEmbedding()


@scorer("ragas")
class RagasScorer(Scorer):
    """One ragas metric (``faithfulness``, ``answer_relevancy``, ``context_precision``,
    ``context_recall``) computed by ragas with the aiapp judge route as its LLM.

    Args:
        metric: The ragas metric.
        gateway: The gateway serving the judge route (runner context).
        judge: The judge route ragas calls.
        embedder: Embedder for ``answer_relevancy`` (name or object; the local MiniLM by default).
        retries: Re-asks after an unusable judge reply.
        threshold: Value at or above which a case passes (none by default).
        strictness: Questions ragas generates per answer for ``answer_relevancy``.

    Raises:
        ConfigError: unknown metric, or ragas not installed.
    """

    calls_models = True

    def __init__(
        self,
        *,
        metric: str,
        gateway: Gateway | None = None,
        judge: str = "judge",
        embedder: str | Embedder | None = None,
        retries: int = 1,
        threshold: float | None = None,
        strictness: int = 3,
    ) -> None:
        if metric not in METRICS:
            raise ConfigError(
                f"unknown ragas metric {metric!r} (known: {', '.join(METRICS)})", field="scorers.metric"
            )
        import_ragas()
        self.metric = metric
        self.name = f"ragas_{metric}"
        self.gateway = gateway
        self.judge = judge
        self.retries = retries
        self.threshold = threshold
        self.strictness = strictness
        self._embedder_spec = embedder
        self._metric: Any = None

    def ragas_metric(self) -> Any:
        """The ragas metric object (built on first use)."""
        if self._metric is None:
            assert self.gateway is not None
            from ragas.metrics import collections

            cls = getattr(collections, METRICS[self.metric][0])
            llm = gateway_llm(self.gateway, self.judge, retries=self.retries)
            if self.metric == "answer_relevancy":
                from aiapp.gateway.embedders import DEFAULT_EMBEDDER, Embedder, build_embedder

                spec = self._embedder_spec
                embedder = spec if isinstance(spec, Embedder) else build_embedder(spec or DEFAULT_EMBEDDER)
                self._metric = cls(
                    llm=llm, embeddings=gateway_embeddings(embedder), strictness=self.strictness
                )
            else:
                self._metric = cls(llm=llm)
        return self._metric

    def inputs(self, sample: Sample) -> dict[str, Any] | str:
        """ragas's keyword arguments for this sample, or why it cannot be scored."""
        needs = METRICS[self.metric][1]
        question = sample.case.question.strip()
        if not question:
            return "case has no question"
        kwargs: dict[str, Any] = {"user_input": question}
        if "response" in needs:
            if not sample.output.text.strip():
                return "empty answer: ragas needs a response"
            kwargs["response"] = sample.output.text
        if "contexts" in needs:
            if not sample.output.hits:
                return "no retrieved context (output.hits is empty)"
            kwargs["retrieved_contexts"] = [hit.text for hit in sample.output.hits]
        if "reference" in needs:
            refs = references(sample.case.expected)
            if not refs:
                return "case has no reference answer (expected)"
            kwargs["reference"] = "\n".join(refs)
        return kwargs

    def score(self, sample: Sample) -> Score:
        """Sync :meth:`ascore`."""
        return run_sync(self.ascore(sample))

    async def ascore(self, sample: Sample) -> Score:
        """Run the ragas metric on one sample."""
        if sample.output.error is not None:
            return self.unscored(f"target failed: {sample.output.error}")
        why = judge_unavailable(self.gateway, self.judge)
        if why is not None:
            return self.unscored(why)
        kwargs = self.inputs(sample)
        if isinstance(kwargs, str):
            return self.unscored(kwargs)
        metric = self.ragas_metric()
        steps: list[RagasStep] = []
        token = _STEPS.set(steps)
        try:
            result = await metric.ascore(**kwargs)
        except RagasJudgeError as exc:
            reply = exc.reply
            return self.unscored(
                str(exc), judge=self.judge, raw=reply.raw, attempts=reply.attempts, **_trail(steps)
            )
        except Exception as exc:  # a third-party engine: any failure is this case's, reported, not raised
            return self.unscored(
                f"ragas {self.metric} failed: {type(exc).__name__}: {exc}", judge=self.judge, **_trail(steps)
            )
        finally:
            _STEPS.reset(token)
        value, reason = getattr(result, "value", result), getattr(result, "reason", None)
        if self.metric == "answer_relevancy" and no_questions(steps):
            return self.unscored(
                f"ragas returned {value!r}, not a score: the judge generated no question from the "
                "answer (ragas counts that as 0; aiapp leaves it unscored)",
                judge=self.judge,
                engine="ragas",
                ragas_value=repr(value),
                **_trail(steps),
            )
        return to_score(
            self.name,
            value,
            reason or f"ragas {self.metric}",
            threshold=self.threshold,
            why_unscored=reason or explain_nan(self.metric, steps),
            judge=self.judge,
            engine="ragas",
            **_trail(steps),
        )


def _trail(steps: list[RagasStep]) -> dict[str, Any]:
    """The metadata every ragas score carries: model calls made and the ragas steps run."""
    return {"judge_calls": sum(s.attempts for s in steps), "ragas_steps": [s.schema for s in steps]}


def _alias(metric: str) -> Any:
    def factory(
        *,
        gateway: Gateway | None = None,
        judge: str = "judge",
        embedder: str | Embedder | None = None,
        retries: int = 1,
        threshold: float | None = None,
        strictness: int = 3,
    ) -> Scorer:
        return RagasScorer(
            metric=metric,
            gateway=gateway,
            judge=judge,
            embedder=embedder,
            retries=retries,
            threshold=threshold,
            strictness=strictness,
        )

    factory.__name__ = f"ragas_{metric}"
    factory.__doc__ = f"The ragas {metric} metric (see :class:`RagasScorer`)."
    return factory


for _metric in METRICS:
    scorer(f"ragas_{_metric}")(_alias(_metric))
