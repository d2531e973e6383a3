"""Synthetic test sets: generated from chunks, deduplicated, support-checked, reviewed; never silently empty."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiapp.config import RetrievalSettings, Settings
from aiapp.errors import InputError
from aiapp.evals._synth import (
    SynthChunk,
    apply_review,
    corpus_chunks,
    parse_reply,
    review_path_for,
    synthesize,
    write_synth,
)
from aiapp.evals._synth_template import HeadingQuestionWriter
from aiapp.gateway import Gateway
from aiapp.gateway.embedders import Embedder, TextKind, Vectors, normalize
from aiapp.testing import FakeModel, embed_text

TOPICS = [
    ("port", "The server listens on port 11434 by default and binds to the loopback address."),
    ("host", "Set the OLLAMA_HOST variable to change the address the server binds to."),
    ("models", "Models are stored in the home directory unless OLLAMA_MODELS names another folder."),
    ("origins", "Extra web origins are allowed with the OLLAMA_ORIGINS variable, a comma separated list."),
    ("keepalive", "Models stay loaded for five minutes; OLLAMA_KEEP_ALIVE changes how long they stay."),
    ("parallel", "OLLAMA_NUM_PARALLEL sets how many requests each loaded model serves at the same time."),
    ("queue", "OLLAMA_MAX_QUEUE sets how many requests may wait before the server answers busy."),
    ("flash", "Flash attention is turned on with the OLLAMA_FLASH_ATTENTION variable set to one."),
    ("garbage", "This chunk always gets a reply that is not JSON at all from the fake route, every time."),
    ("twin", "The server listens on port 11434 by default, which is its twin chunk on purpose."),
    ("wrong", "GPUs with compute capability five and above are supported through the CUDA driver."),
    ("context", "The context window defaults to four thousand tokens and OLLAMA_CONTEXT_LENGTH raises it."),
]
CHUNKS = [
    SynthChunk(chunk_id=f"docs/{t}.md#{i:04x}", source=f"docs/{t}.md", text=text, headings=(t.title(),))
    for i, (t, text) in enumerate(TOPICS)
]
GARBAGE_CALLS: list[str] = []
QUESTIONS = {
    "host": "How do I change the bind address?",
    "models": "Where are models kept on disk?",
    "origins": "Can browsers from other origins call the API?",
    "keepalive": "How long do models stay in memory?",
    "parallel": "How many requests run concurrently per model?",
    "queue": "When does the server start refusing requests?",
    "flash": "Which switch turns flash attention on?",
}


class WordEmbedder(Embedder):
    """Hashed-token embeddings: questions with the same words are near-duplicates."""

    name = "test/hash"
    dim = 64
    max_tokens = 512

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        return normalize(np.asarray([embed_text(t, self.dim) for t in texts], dtype=np.float32))

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))


def _writer(messages: Any, options: Any) -> str:
    """A scripted route: one grounded pair per chunk, with the failure modes a real LLM has."""
    assert options.response_format is not None and options.response_format.type == "json_schema"
    text = str(messages[-1].content)
    topic = re.search(r'source="docs/(\w+)\.md"', text)
    assert topic is not None
    name = topic.group(1)
    body = re.search(r"\n(.*?)\n</excerpt>", text, re.S)
    assert body is not None
    if name == "garbage":
        GARBAGE_CALLS.append(name)
        return "Sure! Here is a question: what is this? {not json"
    if name == "twin":  # the same question as the port chunk, in other words
        return json.dumps(
            {
                "pairs": [
                    {"question": "On which port does the server listen by default?", "answer": body.group(1)}
                ]
            }
        )
    if name == "port":
        return (
            "```json\n"
            + json.dumps(
                {
                    "pairs": [
                        {
                            "question": "Which port does the server listen on by default?",
                            "answer": body.group(1),
                        }
                    ]
                }
            )
            + "\n```"
        )
    if name == "wrong":  # an answer the chunk does not support
        return json.dumps(
            {
                "pairs": [
                    {
                        "question": "Which GPUs are supported?",
                        "answer": "Every Intel Arc card since 2019 runs at full speed.",
                    }
                ]
            }
        )
    if name == "context":
        return json.dumps({"items": []})  # valid JSON, wrong schema
    return json.dumps({"pairs": [{"question": QUESTIONS[name], "answer": body.group(1)}]})


def _gateway(home: Path, fake: FakeModel) -> Gateway:
    settings = Settings()
    settings.home = home
    return Gateway(settings, models={"writer": fake})


def test_synth_set_is_non_empty_deduplicated_and_grounded(aiapp_home: Path) -> None:
    GARBAGE_CALLS.clear()
    fake = FakeModel(default=_writer)
    result = synthesize(
        CHUNKS,
        gateway=_gateway(aiapp_home, fake),
        route="writer",
        min_chars=20,
        n=12,
        kinds=["factual"],
        embedder=WordEmbedder(),
        duplicate_threshold=0.8,
        min_keep=4,
        seed=1,
    )
    rows, report = result.rows, result.report
    assert rows, "never an empty set"
    by_chunk = {c.chunk_id: c for c in CHUNKS}
    # Grounded: every answer comes from its gold chunk, and the gold ids are real chunk ids.
    for row in rows:
        assert row["gold_ids"] and all(g in by_chunk for g in row["gold_ids"])
        gold = by_chunk[row["gold_ids"][0]]
        assert row["answer"] == gold.text
        assert row["sections"] == [gold.section] and row["sources"] == [gold.source]
    kept_sources = {r["sources"][0] for r in rows}
    assert "docs/wrong.md" not in kept_sources and "docs/garbage.md" not in kept_sources
    # Deduplicated: the twin of the port question is gone (one of them survives).
    questions = [r["question"] for r in rows]
    assert len({"docs/port.md", "docs/twin.md"} & kept_sources) == 1
    vectors = WordEmbedder().embed(questions)
    sims = vectors @ vectors.T
    assert float(np.max(sims - np.eye(len(rows)) * 2)) < 0.8
    # Garbage is re-asked once, then skipped and counted; nothing crashed.
    assert len(GARBAGE_CALLS) >= 2
    assert report.unusable["reply is not JSON"] >= 1
    assert any(r.startswith("reply does not match the schema") for r in report.unusable)
    assert report.duplicates >= 1
    assert report.unsupported >= 1
    assert report.kept == len(rows) == 8  # 12 chunks − garbage − wrong schema − unsupported − twin
    assert report.generated >= report.kept + report.duplicates + report.unsupported


def test_too_few_survivors_is_an_error_that_says_why(aiapp_home: Path) -> None:
    fake = FakeModel(default="I cannot produce JSON today.")
    with pytest.raises(InputError) as err:
        synthesize(
            CHUNKS,
            gateway=_gateway(aiapp_home, fake),
            route="writer",
            min_chars=20,
            n=10,
            kinds=["factual"],
            rounds=2,
        )
    message = str(err.value)
    assert "0 of 10 pairs survived" in message
    assert "0 pairs generated" in message and "reply is not JSON" in message
    assert "near-duplicates" in message and "not supported" in message


def test_route_check_asks_the_same_route(aiapp_home: Path) -> None:
    def route(messages: Any, options: Any) -> str:
        if "fact checker" in str(messages[0].content):  # the support check, through the same route
            count = len(re.findall(r"^\d+\. ", str(messages[-1].content), re.M))
            return json.dumps({"verdicts": [{"index": i, "verdict": True} for i in range(1, count + 1)]})
        return _writer(messages, options)

    fake = FakeModel(default=route)
    chunks = [c for c in CHUNKS if c.source not in ("docs/garbage.md", "docs/context.md", "docs/twin.md")]
    result = synthesize(
        chunks,
        gateway=_gateway(aiapp_home, fake),
        route="writer",
        min_chars=20,
        n=4,
        kinds=["factual"],
        check="route",
    )
    assert len(result.rows) == 4
    assert any("fact checker" in str(c.messages[0].content) for c in fake.calls)


def test_parse_reply_names_what_is_wrong() -> None:
    assert parse_reply("nope") == "reply is not JSON"
    assert parse_reply('{"pairs": []}') == "reply has no pair"
    assert str(parse_reply('{"pairs": [{"answer": "x"}]}')).startswith(
        "reply does not match the schema (pairs.0.question"
    )
    pair = parse_reply('```json\n{"pairs": [{"question": "What is the port?", "answer": "11434"}]}\n```')
    assert not isinstance(pair, str) and pair.answer == "11434"


def test_review_file_accepts_and_rejects_rows(aiapp_home: Path, tmp_path: Path) -> None:
    fake = FakeModel(default=_writer)
    chunks = [
        c
        for c in CHUNKS
        if c.source not in ("docs/garbage.md", "docs/context.md", "docs/twin.md", "docs/wrong.md")
    ]
    result = synthesize(
        chunks, gateway=_gateway(aiapp_home, fake), route="writer", min_chars=20, n=5, kinds=["factual"]
    )
    dataset, review = write_synth(result, tmp_path / "set.jsonl")
    assert review == review_path_for(dataset) == tmp_path / "set.review.jsonl"
    lines = [json.loads(line) for line in review.read_text().splitlines()]
    assert [item["verdict"] for item in lines] == ["pending"] * 5
    assert {"case_id", "question", "answer", "context", "reference"} <= set(lines[0])
    with pytest.raises(InputError, match="5 rows are still pending"):
        apply_review(dataset, review, tmp_path / "out.jsonl")
    for i, item in enumerate(lines):
        item["verdict"] = "reject" if i == 1 else "accept"
    review.write_text("".join(json.dumps(item) + "\n" for item in lines))
    outcome = apply_review(dataset, review, tmp_path / "out.jsonl")
    kept = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert kept == outcome.accepted and len(kept) == 4 and lines[1]["case_id"] not in kept
    lines[0]["verdict"] = "maybe"
    review.write_text("".join(json.dumps(item) + "\n" for item in lines))
    with pytest.raises(InputError, match=r"set.review.jsonl:1: verdict must be accept"):
        apply_review(dataset, review, tmp_path / "out.jsonl")


def test_offline_writer_on_a_corpus_keeps_index_chunk_ids(aiapp_home: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "faq.md").write_text(
        "# FAQ\n\n## How do I change the port?\n\nSet OLLAMA_HOST to the address and port you want the "
        "server to use. The default port is 11434 on the loopback address.\n\n"
        "## Where are models stored?\n\nModels are stored under the home folder of the user. Set "
        "OLLAMA_MODELS to keep them in another directory of your choice.\n"
    )
    (corpus / "gpu.md").write_text(
        "# GPUs\n\n## Nvidia\n\nOllama supports Nvidia GPUs with compute capability 5.0 and newer. "
        "Older cards run on the CPU instead, which is slower but works the same way.\n"
    )
    settings = Settings(retrieval=RetrievalSettings(chunk_tokens=48, chunk_overlap=4))
    settings.home = aiapp_home
    embedder = WordEmbedder()
    chunks = corpus_chunks(corpus, settings, embedder=embedder)
    from aiapp.retrieval import Index

    with Index.open("docs", settings, embedder=embedder) as index:
        index.ingest(corpus)
        indexed = {h.chunk_id for q in ("port", "models stored", "nvidia") for h in index.search(q, k=10)}
    assert {c.chunk_id for c in chunks} == indexed  # gold ids are the ids the index returns
    gw = Gateway(settings, models={"offline": HeadingQuestionWriter()})
    result = synthesize(
        chunks, gateway=gw, route="offline", n=3, kinds=["factual"], embedder=embedder, min_keep=3
    )
    questions = {r["question"] for r in result.rows}
    assert {"How do I change the port?", "Where are models stored?"} <= questions
    assert all(r["gold_ids"][0] in indexed for r in result.rows)
    assert result.report.unsupported == 0
