"""Native RAG metrics: faithfulness, answer relevancy, context precision and recall.

Without a judge they fall back to a lexical check and say so; with a FakeModel judge they ask it
item by item. Missing inputs give unscored results with reasons.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from aiapp.config import Settings
from aiapp.evals._score import Case, Output, Sample
from aiapp.evals.scorers._base import build_scorer
from aiapp.evals.scorers._rag import (
    AnswerRelevancy,
    ContextPrecision,
    ContextRecall,
    Faithfulness,
    abstains,
    average_precision,
    lexical_support,
    split_statements,
)
from aiapp.gateway import Gateway
from aiapp.gateway.embedders import Embedder, TextKind, Vectors, normalize
from aiapp.testing import FakeModel, embed_text
from aiapp.types import Hit

HITS = [
    Hit(
        text="Ollama binds to 127.0.0.1 port 11434 by default. Change the address with OLLAMA_HOST.",
        source="docs/faq.md",
    ),
    Hit(text="Models are stored in ~/.ollama/models on macOS.", source="docs/faq.md"),
    Hit(text="The GPU guide lists supported NVIDIA cards.", source="docs/gpu.md"),
]
QUESTION = "How do I make Ollama listen on another address?"


def rag(answer: str, *, expected: object = None, hits: Sequence[Hit] = HITS) -> Sample:
    return Sample(
        case=Case(id="q1", input=QUESTION, expected=expected), output=Output(text=answer, hits=list(hits))
    )


def verdicts(*flags: bool) -> str:
    return json.dumps(
        {"verdicts": [{"index": i, "reasoning": "-", "verdict": f} for i, f in enumerate(flags, 1)]}
    )


def judged(fake: FakeModel) -> Gateway:
    return Gateway(Settings(), models={"judge": fake})


NO_JUDGE = Gateway(Settings())  # no `judge` route: metrics fall back to the lexical check


def test_statements_drop_citations_and_bullets() -> None:
    text = "Ollama listens on port 11434 [1]. Set OLLAMA_HOST to change it [1, 2].\n\n- Restart the server."
    assert split_statements(text) == [
        "Ollama listens on port 11434 .",
        "Set OLLAMA_HOST to change it .",
        "Restart the server.",
    ]


def test_lexical_support_requires_the_numbers_to_match() -> None:
    assert lexical_support("Ollama binds to port 11434.", HITS[0].text) == 1.0
    assert lexical_support("Ollama binds to port 8080.", HITS[0].text) == 0.0


def test_abstentions_are_recognized() -> None:
    assert abstains("I could not find an answer to that in the provided context.")
    assert not abstains("Set OLLAMA_HOST. I don't know more. Ports are 11434. Restart it.")


# -- faithfulness -----------------------------------------------------------------------------------


async def test_faithfulness_lexical_fallback_is_labelled() -> None:
    scorer = Faithfulness(gateway=NO_JUDGE)
    assert scorer.calls_models is False
    answer = "Ollama binds to port 11434 by default [1]. It also speaks fluent French and Klingon."

    score = await scorer.ascore(rag(answer))

    assert score.value == 0.5
    assert score.metadata["method"] == "lexical"
    assert "lexical fallback" in score.reason
    assert "no judge model configured" in score.metadata["judge_unavailable"]
    first, second = score.metadata["items"]
    assert first["supported"] is True and first["source"] == "docs/faq.md"
    assert second["supported"] is False


async def test_faithfulness_with_a_judge_checks_each_statement() -> None:
    fake = FakeModel([verdicts(True, False)])
    scorer = Faithfulness(gateway=judged(fake))
    assert scorer.calls_models is True

    score = await scorer.ascore(rag("Set OLLAMA_HOST. Then reboot the machine twice."))

    assert score.value == 0.5 and score.metadata["method"] == "judge"
    assert [i["supported"] for i in score.metadata["items"]] == [True, False]
    prompt = fake.last_call.last_user_text
    assert "1. Set OLLAMA_HOST." in prompt and "[1] docs/faq.md" in prompt
    assert fake.last_call.options.temperature == 0


async def test_faithfulness_judge_with_the_wrong_number_of_verdicts_is_asked_again() -> None:
    fake = FakeModel([verdicts(True), verdicts(True, True)])
    score = await Faithfulness(gateway=judged(fake)).ascore(rag("Set OLLAMA_HOST. Restart Ollama."))
    assert score.value == 1.0
    assert "exactly one verdict for each item 1..2" in fake.last_call.last_user_text


async def test_faithfulness_judge_that_never_answers_properly_is_unscored() -> None:
    fake = FakeModel(["?", "??"])
    score = await Faithfulness(gateway=judged(fake)).ascore(rag("Set OLLAMA_HOST."))
    assert not score.scored and score.metadata["raw"] == "??"


@pytest.mark.parametrize(
    ("answer", "hits", "reason"),
    [
        ("Set OLLAMA_HOST.", [], "no retrieved context"),
        ("   ", HITS, "empty answer"),
        ("I could not find an answer to that in the provided context.", HITS, "abstains"),
    ],
)
async def test_faithfulness_unscored_inputs(answer: str, hits: list[Hit], reason: str) -> None:
    score = await Faithfulness(gateway=NO_JUDGE).ascore(rag(answer, hits=hits))
    assert not score.scored and reason in score.reason


async def test_method_judge_without_a_judge_is_unscored_not_lexical() -> None:
    score = await Faithfulness(gateway=NO_JUDGE, method="judge").ascore(rag("Set OLLAMA_HOST."))
    assert not score.scored and score.reason.startswith("no judge model configured")


def test_faithfulness_through_the_registry_and_sync() -> None:
    scorer = build_scorer("faithfulness", {"method": "lexical", "threshold": 0.8})
    score = scorer.score(rag("Change the address with OLLAMA_HOST."))
    assert score.value == 1.0 and score.passed is True


# -- context recall -----------------------------------------------------------------------------------


async def test_context_recall_lexical() -> None:
    reference = (
        "Change the address with the OLLAMA_HOST variable. The default port is 11434. Restart with systemctl."
    )
    score = await ContextRecall(gateway=NO_JUDGE).ascore(rag("whatever", expected=reference))
    assert score.value == pytest.approx(2 / 3)
    assert [i["supported"] for i in score.metadata["items"]] == [True, True, False]


async def test_context_recall_with_a_judge() -> None:
    fake = FakeModel([verdicts(True, False)])
    score = await ContextRecall(gateway=judged(fake)).ascore(
        rag("x", expected="Use OLLAMA_HOST. Restart it.")
    )
    assert score.value == 0.5 and "a reference answer" in fake.last_call.last_user_text


async def test_context_recall_needs_a_reference_and_context() -> None:
    no_ref = await ContextRecall(gateway=NO_JUDGE).ascore(rag("x"))
    no_hits = await ContextRecall(gateway=NO_JUDGE).ascore(rag("x", expected="Use OLLAMA_HOST.", hits=[]))
    assert "no reference answer" in no_ref.reason and "no retrieved context" in no_hits.reason


# -- context precision ----------------------------------------------------------------------------------


async def test_context_precision_lexical_against_the_reference() -> None:
    score = await ContextPrecision(gateway=NO_JUDGE).ascore(
        rag("x", expected="Change the address with OLLAMA_HOST.")
    )
    assert score.value == pytest.approx(1 / 3)
    assert [r["relevant"] for r in score.metadata["items"]] == [True, False, False]
    assert score.metadata["average_precision"] == 1.0


async def test_context_precision_with_a_judge_and_rank_awareness() -> None:
    fake = FakeModel([verdicts(False, True, True)])
    score = await ContextPrecision(gateway=judged(fake), k=3).ascore(rag("x"))
    assert score.value == pytest.approx(2 / 3)
    assert score.metadata["average_precision"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert "3. (docs/gpu.md)" in fake.last_call.last_user_text


async def test_context_precision_without_judge_or_reference_is_unscored() -> None:
    score = await ContextPrecision(gateway=NO_JUDGE).ascore(rag("x"))
    assert not score.scored and "needs a reference answer" in score.reason


def test_average_precision() -> None:
    assert average_precision([True, False, True]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([False, False]) == 0.0


# -- answer relevancy ---------------------------------------------------------------------------------


class HashEmbedder(Embedder):
    """The stub server's hashed-token embedding: deterministic, offline, word overlap → similarity."""

    name = "test/hash"
    dim = 64

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        return normalize(np.array([embed_text(t, self.dim) for t in texts]))


async def test_answer_relevancy_by_embedding() -> None:
    scorer = AnswerRelevancy(embedder=HashEmbedder(), threshold=0.3)
    on_topic = await scorer.ascore(rag("Make Ollama listen on another address with OLLAMA_HOST."))
    off_topic = await scorer.ascore(rag("Bananas are rich in potassium."))
    assert on_topic.value is not None and off_topic.value is not None
    assert on_topic.value > off_topic.value and on_topic.passed is True
    assert on_topic.metadata == {"method": "embedding", "embedder": "test/hash"}
    assert (await scorer.ascore(rag(""))).value == 0.0


async def test_answer_relevancy_by_judge() -> None:
    fake = FakeModel([json.dumps({"reasoning": "direct", "score": 4})])
    score = await AnswerRelevancy(method="judge", gateway=judged(fake)).ascore(rag("Set OLLAMA_HOST."))
    assert score.value == 0.75 and score.metadata["raw_score"] == 4
    no_judge = await AnswerRelevancy(method="judge", gateway=NO_JUDGE).ascore(rag("Set OLLAMA_HOST."))
    assert not no_judge.scored


def test_answer_relevancy_with_the_local_minilm() -> None:
    pytest.importorskip("sentence_transformers", reason="the retrieval extra is not installed")
    scorer = build_scorer("answer_relevancy", {})
    relevant = scorer.score(
        rag("Set the OLLAMA_HOST environment variable to the address Ollama should bind to.")
    )
    unrelated = scorer.score(rag("The recipe needs two eggs and a cup of flour."))
    assert relevant.value is not None and unrelated.value is not None
    assert relevant.value > unrelated.value
