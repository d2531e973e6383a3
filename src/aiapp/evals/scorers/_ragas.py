"""The ragas adapter (extra ``aiapp[ragas]``): ragas metrics mapped onto the same :class:`Score`.

The only module of aiapp that imports ragas. It sets ``RAGAS_DO_NOT_TRACK=true`` before the import
(ragas sends usage analytics otherwise) and imports lazily, when a ragas scorer is built, because
ragas pulls langchain, pandas and pyarrow.

ragas's model calls go through aiapp's gateway: :func:`gateway_llm` wraps a judge route as a ragas
``InstructorBaseRagasLLM`` (JSON replies parsed against ragas's own schemas, with aiapp's bounded
retry), and :func:`gateway_embeddings` wraps an aiapp embedder. So the calls are traced, cached and
costed like every other call, and tests drive ragas with ``FakeModel``.

ragas returns NaN when it cannot compute a metric (no statements extracted, every verdict missing);
here that becomes an unscored result with a reason, never NaN.

Suite usage::

    scorers:
      - ragas_faithfulness: {judge: judge}
      - ragas: {metric: context_recall}
"""

from __future__ import annotations

import math
import os
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
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"  # before the import: ragas caches the flag
    try:
        import ragas
        import ragas.metrics.collections
    except ImportError as exc:
        raise ConfigError(f"{INSTALL_HINT} ({exc})", field="scorers") from exc
    return ragas


def to_score(
    name: str, value: Any, reason: str | None = None, *, threshold: float | None = None, **metadata: Any
) -> Score:
    """A ragas result value as a :class:`Score`: NaN, None or a non-number become unscored."""
    number: float | None
    try:
        number = float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number):
        return Score.unscored(
            name,
            f"ragas returned {value!r} instead of a score (it could not compute the metric, e.g. no "
            "statements could be extracted or the judge's verdicts were missing)",
            ragas_value=repr(value),
            **metadata,
        )
    passed = None if threshold is None else number >= threshold
    return Score(scorer=name, value=number, passed=passed, reason=reason or "", metadata=metadata)


def gateway_llm(gateway: Gateway, route: str, *, retries: int = 1) -> Any:
    """A ragas ``InstructorBaseRagasLLM`` that answers through an aiapp gateway route."""
    import_ragas()
    from ragas.llms.base import InstructorBaseRagasLLM

    class GatewayRagasLLM(InstructorBaseRagasLLM):  # type: ignore[misc]
        """ragas structured generation over the aiapp gateway (temperature 0, bounded retry)."""

        def __init__(self) -> None:
            self.gateway = gateway
            self.route = route
            self.retries = retries
            self.calls = 0

        async def agenerate(self, prompt: str, response_model: Any) -> Any:
            self.calls += 1
            reply = await ask_judge(
                self.gateway, self.route, [Message.user(prompt)], response_model, retries=self.retries
            )
            if reply.parsed is None:
                raise RagasJudgeError(reply)
            return reply.parsed

        def generate(self, prompt: str, response_model: Any) -> Any:
            return run_sync(self.agenerate(prompt, response_model))

    return GatewayRagasLLM()


def gateway_embeddings(embedder: Embedder) -> Any:
    """A ragas ``BaseRagasEmbedding`` over an aiapp embedder."""
    import_ragas()
    from ragas.embeddings.base import BaseRagasEmbedding

    class AiappRagasEmbedding(BaseRagasEmbedding):  # type: ignore[misc]
        """ragas embeddings from an aiapp :class:`~aiapp.gateway.embedders.Embedder`."""

        def __init__(self) -> None:
            super().__init__(cache=None)
            self.embedder = embedder

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return [float(x) for x in embedder.embed([text])[0]]

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return [float(x) for x in (await embedder.aembed([text]))[0]]

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return [[float(x) for x in row] for row in embedder.embed(texts)]

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return [[float(x) for x in row] for row in await embedder.aembed(texts)]

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
        try:
            result = await metric.ascore(**kwargs)
        except RagasJudgeError as exc:
            reply = exc.reply
            return self.unscored(str(exc), judge=self.judge, raw=reply.raw, attempts=reply.attempts)
        except Exception as exc:  # a third-party engine: any failure is this case's, reported, not raised
            return self.unscored(f"ragas {self.metric} failed: {type(exc).__name__}: {exc}", judge=self.judge)
        return to_score(
            self.name,
            getattr(result, "value", result),
            getattr(result, "reason", None) or f"ragas {self.metric}",
            threshold=self.threshold,
            judge=self.judge,
            engine="ragas",
        )


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
