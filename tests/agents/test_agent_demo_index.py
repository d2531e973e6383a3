"""A multi-step task over the demo index: the agent searches a real aiapp Index (embedded Qdrant)
built from a few Ollama docs, then computes with the calculator — scripted with FakeModel and with
the stub server's tool-call replies."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import HashEmbedder

from aiapp.agents import Agent
from aiapp.agents.tools import calculator, search_tool
from aiapp.config import Deployment, Route, load_settings
from aiapp.gateway import Gateway
from aiapp.retrieval import Index
from aiapp.testing import FakeModel, StubServer
from aiapp.types import Message, ToolCall

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "corpora" / "ollama" / "docs", REPO.parent / "shared" / "data" / "docs_ollama" / "docs"]
TASK = "With 4 parallel requests and the default context window, what context size does a model get?"


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = next((d for d in DOCS if (d / "faq.mdx").is_file()), None)
    if source is None:
        pytest.skip("the Ollama demo corpus is not in this checkout")
    corpus = tmp_path_factory.mktemp("corpora") / "demo"
    corpus.mkdir()
    for name in ("faq.mdx", "gpu.mdx", "linux.mdx"):
        shutil.copy(source / name, corpus / name)
    return corpus


@pytest.fixture
def index(demo_corpus: Path, aiapp_home: Path) -> Iterator[Index]:
    # The hashed-token embedder keeps the test fast; the index, its store and hybrid search are real.
    idx = Index.open("demo", load_settings(), embedder=HashEmbedder())
    report = idx.ingest(demo_corpus)
    assert report.added == 3
    yield idx


def scripted(messages: list[Message], options: object) -> list[ToolCall] | str:
    """A tool-calling model's moves, decided from what the tools returned."""
    results = [m.content for m in messages if m.role == "tool"]
    if not results:
        return [
            ToolCall(id="s1", name="search", arguments=json.dumps({"query": "default context window size"}))
        ]
    if len(results) == 1:
        size = re.search(r"context window size of (\d+) tokens", results[0])
        assert size is not None, results[0]
        return [
            ToolCall(id="c1", name="calculator", arguments=json.dumps({"expression": f"{size.group(1)} * 4"}))
        ]
    return f"Each model gets a {results[1]}-token context [1]."


def test_agent_searches_the_demo_index_and_computes(index: Index) -> None:
    gw = Gateway(load_settings(), models={"m": FakeModel(default=scripted)})
    index.tracer = gw.tracer  # the index's retrieval span nests under the tool call
    agent = Agent(gateway=gw, model="m", tools=[search_tool(index, k=3), calculator])
    run = agent.run(TASK, success=lambda r: "16384" in (r.output or ""))
    assert run.ok and run.success is True
    assert run.output == "Each model gets a 16384-token context [1]."
    search_result = run.tool_calls[0].result
    assert "faq.mdx" in search_result and "4096 tokens" in search_result
    spans = gw.tracer.store.trace(run.trace_id)  # type: ignore[union-attr]
    by_id = {s.span_id: s for s in spans}
    retrieval = next(s for s in spans if s.kind == "retrieval")
    assert by_id[retrieval.parent_id].kind == "tool"  # type: ignore[index]
    assert [s.kind for s in spans if s.parent_id == spans[0].span_id] == ["llm", "tool", "llm", "tool", "llm"]


def test_agent_over_the_demo_index_through_the_stub_server(index: Index, stub: StubServer) -> None:
    stub.queue_replies(
        [ToolCall(id="call_1", name="search", arguments='{"query": "default context window size"}')],
        [ToolCall(id="call_2", name="calculator", arguments='{"expression": "4096 * 4"}')],
        "Each model gets a 16384-token context.",
    )
    route = Route(deployments=[Deployment(model="vllm/stub-model", api_base=stub.base_url, timeout_s=60)])
    settings = load_settings()
    settings.routes["stub"] = route
    agent = Agent(gateway=Gateway(settings), model="stub", tools=[search_tool(index, k=3), calculator])
    run = agent.run(TASK)
    assert run.ok and [c.result for c in run.tool_calls][1] == "16384"
    sent = stub.requests("chat")[1]["messages"][-1]
    assert sent["role"] == "tool" and "4096 tokens" in sent["content"]


def test_offline_baseline_answers_from_the_demo_index(index: Index) -> None:
    agent = Agent(gateway=Gateway(load_settings()), tools=[search_tool(index, k=3)], prefetch=["search"])
    run = agent.run("What is the default context window size?")
    assert run.ok and "4096" in (run.output or "")


def test_long_term_memory_in_a_retrieval_index(aiapp_home: Path) -> None:
    from aiapp.agents import IndexMemory, Memory, MemoryScope

    store = IndexMemory(Index.open("memories", load_settings(), embedder=HashEmbedder()))
    ana, bob = MemoryScope("ana", "s1"), MemoryScope("bob", "s9")
    store.remember("ana uses a 4090 GPU", scope=ana)
    store.remember("bob uses a 3060 GPU", scope=bob)
    store.remember("ana lives in Oslo", scope=MemoryScope("ana", "s2"))
    assert [h.text for h in store.recall("which GPU", scope=ana)] == [
        "ana uses a 4090 GPU",
        "ana lives in Oslo",
    ]
    assert [h.text for h in store.recall("which GPU", scope=bob)] == ["bob uses a 3060 GPU"]
    assert store.recall("anything", scope=MemoryScope("eve")) == []
    reopened = IndexMemory(Index.open("memories", load_settings(), embedder=HashEmbedder()))
    assert len(reopened._items) == 3 and reopened.path == aiapp_home / "memory" / "memories.json"

    fake = FakeModel(["You use a 4090."])
    agent = Agent(
        gateway=Gateway(load_settings(), models={"m": fake}), model="m", memory=Memory(long_term=store)
    )
    agent.run("Which GPU do I use?", user="ana")
    assert "- ana uses a 4090 GPU" in fake.last_messages[0].content
