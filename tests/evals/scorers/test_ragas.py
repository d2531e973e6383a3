"""The ragas adapter: NaN becomes unscored, and ragas's calls go through the gateway to a FakeModel.

The adapter's tests that need ragas itself skip unless the ``ragas`` extra is installed
(``pip install -e '.[ragas]'``); CI's default extras leave it out to stay lean.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import numpy as np
import pytest

from aiapp.config import Settings
from aiapp.errors import ConfigError
from aiapp.evals._score import Case, Output, Sample
from aiapp.evals.scorers._base import build_scorer, scorer_names
from aiapp.evals.scorers._ragas import to_score
from aiapp.gateway import Gateway
from aiapp.gateway.embedders import Embedder, TextKind, Vectors, normalize
from aiapp.testing import FakeModel, embed_text
from aiapp.types import CallOptions, Hit, Message


@pytest.mark.parametrize("value", [float("nan"), None, float("inf"), "n/a"])
def test_values_ragas_could_not_compute_become_unscored(value: object) -> None:
    score = to_score("ragas_faithfulness", value)
    assert not score.scored and score.value is None and "instead of a score" in score.reason


def test_a_real_value_becomes_a_score() -> None:
    score = to_score("ragas_faithfulness", np.float64(0.75), "ok", threshold=0.7, judge="judge")
    assert (score.value, score.passed, score.metadata) == (0.75, True, {"judge": "judge"})


def test_ragas_scorers_are_registered_and_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"ragas", "ragas_faithfulness", "ragas_context_recall"} <= set(scorer_names())
    monkeypatch.setitem(sys.modules, "ragas", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'aiapp\[ragas\]'"):
        build_scorer("ragas_faithfulness", {})


def test_unknown_ragas_metric() -> None:
    with pytest.raises(ConfigError, match="unknown ragas metric 'bleu'"):
        build_scorer("ragas", {"metric": "bleu"})


# -- with ragas installed ---------------------------------------------------------------------------

SAMPLE = Sample(
    case=Case(id="q1", input="Which port does Ollama use?", expected="Ollama uses port 11434."),
    output=Output(
        text="Ollama uses port 11434. It was written in Rust.",
        hits=[Hit(text="Ollama listens on port 11434 by default.", source="docs/faq.md")],
    ),
)


def ragas_judge(*, statements: list[str], verdicts: list[int]) -> object:
    """A fake judge that answers each ragas prompt by the schema it asks for (``response_format``)."""

    def reply(messages: list[Message], options: CallOptions) -> str:
        assert options.response_format is not None and options.temperature == 0
        schema = options.response_format.name
        if schema == "StatementGeneratorOutput":
            return json.dumps({"statements": statements})
        if schema == "NLIStatementOutput":
            rows = [
                {"statement": s, "reason": "-", "verdict": v}
                for s, v in zip(statements, verdicts, strict=True)
            ]
            return json.dumps({"statements": rows})
        if schema == "ContextRecallOutput":
            rows = [
                {"statement": s, "reason": "-", "attributed": v}
                for s, v in zip(statements, verdicts, strict=True)
            ]
            return json.dumps({"classifications": rows})
        if schema == "ContextPrecisionOutput":
            return json.dumps({"reason": "-", "verdict": verdicts[0]})
        if schema == "AnswerRelevanceOutput":
            return json.dumps({"question": "Which port does Ollama use?", "noncommittal": 0})
        raise AssertionError(f"unexpected ragas schema {schema}")

    return reply


def gateway(fake: FakeModel) -> Gateway:
    return Gateway(Settings(), models={"judge": fake})


@pytest.fixture
def ragas_installed() -> None:
    pytest.importorskip("ragas", reason="the ragas extra is not installed: pip install -e '.[ragas]'")


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_faithfulness_through_the_gateway() -> None:
    statements = ["Ollama uses port 11434.", "Ollama was written in Rust."]
    fake = FakeModel(default=ragas_judge(statements=statements, verdicts=[1, 0]))
    scorer = build_scorer("ragas_faithfulness", {}, gateway=gateway(fake))

    score = await scorer.ascore(SAMPLE)

    assert score.scorer == "ragas_faithfulness" and score.value == 0.5
    assert score.metadata["engine"] == "ragas"
    assert fake.call_count == 2  # statements, then verdicts: both through the gateway
    assert os.environ["RAGAS_DO_NOT_TRACK"] == "true"


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_nan_is_unscored_with_a_reason() -> None:
    fake = FakeModel(default=ragas_judge(statements=[], verdicts=[]))  # no statements → ragas NaN
    score = await build_scorer("ragas_faithfulness", {}, gateway=gateway(fake)).ascore(SAMPLE)
    assert not score.scored and "ragas returned nan" in score.reason


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_context_metrics() -> None:
    fake = FakeModel(default=ragas_judge(statements=["Ollama uses port 11434."], verdicts=[1]))
    recall = await build_scorer("ragas", {"metric": "context_recall"}, gateway=gateway(fake)).ascore(SAMPLE)
    precision = await build_scorer("ragas_context_precision", {}, gateway=gateway(fake)).ascore(SAMPLE)
    assert recall.scorer == "ragas_context_recall" and recall.value == 1.0
    assert precision.value == pytest.approx(1.0)


class HashEmbedder(Embedder):
    name = "test/hash"
    dim = 64

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        return normalize(np.array([embed_text(t, self.dim) for t in texts]))


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_answer_relevancy_uses_aiapp_embeddings() -> None:
    fake = FakeModel(default=ragas_judge(statements=[], verdicts=[]))
    scorer = build_scorer(
        "ragas_answer_relevancy", {"embedder": HashEmbedder(), "strictness": 2}, gateway=gateway(fake)
    )
    score = await scorer.ascore(SAMPLE)
    assert score.value == pytest.approx(1.0)  # the generated question is the question itself
    assert fake.call_count == 2


@pytest.mark.usefixtures("ragas_installed")
async def test_ragas_unscored_paths() -> None:
    fake = FakeModel(["not json", "still not json"])
    broken = await build_scorer("ragas_faithfulness", {}, gateway=gateway(fake)).ascore(SAMPLE)
    assert not broken.scored and broken.metadata["raw"] == "still not json"

    no_judge = await build_scorer("ragas_faithfulness", {}, gateway=Gateway(Settings())).ascore(SAMPLE)
    assert not no_judge.scored and no_judge.reason.startswith("no judge model configured")

    no_ref = SAMPLE.model_copy(update={"case": Case(id="q2", input="Which port?")})
    missing = await build_scorer("ragas_context_recall", {}, gateway=gateway(FakeModel())).ascore(no_ref)
    assert not missing.scored and "no reference answer" in missing.reason
