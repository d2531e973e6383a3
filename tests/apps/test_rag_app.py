"""The RAG app end to end: FakeModel, the local baseline, the stub server; one trace per request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiapp.apps import DEFAULT_PROMPT, Answer, RAGApp, cited_numbers, render_context, strip_citations
from aiapp.config import Deployment, PromptSettings, Route, Settings
from aiapp.errors import InputError, PromptError
from aiapp.gateway import Gateway
from aiapp.prompts import Prompt, PromptMessage, PromptRegistry, Variable
from aiapp.testing import FakeModel, StubServer
from aiapp.types import CallOptions, Hit, Message, Retriever

REPO = Path(__file__).resolve().parents[2]

DOCS = [
    Hit(
        text="Ollama binds 127.0.0.1 port 11434 by default. Set OLLAMA_HOST=0.0.0.0 to make the "
        "server listen on all interfaces.",
        source="corpora/ollama/faq.mdx",
        chunk_id="faq.mdx#3f2a",
        corpus_version="c0ffee",
    ),
    Hit(
        text="Ollama supports Nvidia GPUs with compute capability 5.0 and above.",
        source="corpora/ollama/gpu.mdx",
        chunk_id="gpu.mdx#91bc",
        corpus_version="c0ffee",
    ),
    Hit(
        text="Models are stored in ~/.ollama/models. Set OLLAMA_MODELS to use another directory.",
        source="corpora/ollama/faq.mdx",
        chunk_id="faq.mdx#77d0",
        corpus_version="c0ffee",
    ),
]


class WordRetriever:
    """A small in-memory retriever: ranks hits by words shared with the query."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.queries: list[str] = []

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        self.queries.append(query)
        words = set(re.findall(r"\w+", query.lower()))
        scored = [
            h.model_copy(update={"score": float(len(words & set(re.findall(r"\w+", h.text.lower()))))})
            for h in self.hits
        ]
        return sorted(scored, key=lambda h: -h.score)[:k]


QUESTION = "How do I make the server listen on all interfaces?"


@pytest.fixture
def fake() -> FakeModel:
    return FakeModel()


@pytest.fixture
def gw(fake: FakeModel) -> Iterator[Gateway]:
    settings = Settings(prompts=PromptSettings(dir=REPO / "prompts"))
    with Gateway(settings, models={"fake": fake}) as gateway:
        yield gateway


def shipped(ref: str = "support_answer") -> Prompt:
    return PromptRegistry(REPO / "prompts").get(ref)


def test_the_in_memory_retriever_satisfies_the_protocol() -> None:
    assert isinstance(WordRetriever(DOCS), Retriever)


def test_ask_with_a_fake_model_end_to_end(gw: Gateway, fake: FakeModel) -> None:
    fake.push("Set OLLAMA_HOST=0.0.0.0 [1]. It binds port 11434 by default [1][5].")
    app = RAGApp(gateway=gw, retriever=WordRetriever(DOCS), prompt=shipped(), model="fake", k=2)
    answer = app.ask(QUESTION)

    sent = fake.last_call.messages
    assert [m.role for m in sent] == ["system", "user"]
    assert "<context>\n[1] corpora/ollama/faq.mdx\nOllama binds" in sent[1].content
    assert "[2] corpora/ollama/" in sent[1].content and "[3]" not in sent[1].content  # k=2
    assert f"<question>{QUESTION}</question>" in sent[1].content
    assert fake.last_call.options.temperature == 0 and fake.last_call.options.max_tokens == 400

    assert answer.text.startswith("Set OLLAMA_HOST")
    assert [(c.n, c.source, c.chunk_id) for c in answer.citations] == [
        (1, "corpora/ollama/faq.mdx", "faq.mdx#3f2a")
    ]
    assert len(answer.sources) == 2  # [5] cites nothing that was given: ignored
    assert answer.prompt == "support_answer@v2" and answer.prompt_hash == shipped().content_hash
    assert answer.route == "fake" and answer.model == "fake/model"
    assert answer.usage.output_tokens > 0 and answer.cost_usd == 0.0

    spans = {s.kind: s for s in gw.tracer.store.trace(answer.trace_id)}  # type: ignore[union-attr]
    assert set(spans) == {"app", "retrieval", "llm"}
    app_span, retrieval, llm = spans["app"], spans["retrieval"], spans["llm"]
    assert app_span.parent_id is None and app_span.span_id == answer.trace_id
    assert retrieval.parent_id == app_span.span_id and llm.parent_id == app_span.span_id
    assert llm.prompt_ref == app_span.prompt_ref == "support_answer@v2"
    assert llm.prompt_hash == app_span.prompt_hash == answer.prompt_hash
    assert retrieval.attributes["k"] == 2 and retrieval.attributes["corpus_version"] == "c0ffee"
    assert retrieval.input == QUESTION and retrieval.attributes["hits"][0]["chunk_id"] == "faq.mdx#3f2a"
    assert retrieval.output.startswith("[1] corpora/ollama/faq.mdx (")
    assert app_span.input == QUESTION and app_span.output == answer.text
    assert app_span.attributes["citations"] == [
        {"n": 1, "source": "corpora/ollama/faq.mdx", "chunk_id": "faq.mdx#3f2a"}
    ]


def test_offline_with_the_local_baseline_and_the_default_prompt() -> None:
    with Gateway(Settings()) as gw:
        app = RAGApp(gateway=gw, index=WordRetriever(DOCS))
        assert app.prompt is DEFAULT_PROMPT and app.route == "local"
        answer = app.ask(QUESTION)
        assert "OLLAMA_HOST=0.0.0.0" in answer.text and answer.model == "local/extractive"
        assert answer.citations[0].source == "corpora/ollama/faq.mdx"
        unknown = app.ask("What is the capital of France?")
        assert unknown.text == "I could not find an answer to that in the provided context."
        assert unknown.citations == []


def test_through_the_stub_server(stub: StubServer) -> None:
    route = Route(deployments=[Deployment(model="vllm/stub-model", api_base=stub.base_url, timeout_s=5)])
    stub.queue_replies("Set OLLAMA_HOST=0.0.0.0 to listen on all interfaces [1].")
    with Gateway(Settings(routes={"stub": route})) as gw:
        app = RAGApp(gateway=gw, retriever=WordRetriever(DOCS), prompt=shipped(), model="stub")
        answer = app.ask(QUESTION)
        spans = gw.tracer.store.trace(answer.trace_id)  # type: ignore[union-attr]
    request = stub.requests("chat")[-1]
    assert request["model"] == "stub-model"
    assert request["temperature"] == 0 and request["max_tokens"] == 400
    assert "<context>\n[1] corpora/ollama/faq.mdx" in request["messages"][1]["content"]
    assert answer.citations[0].chunk_id == "faq.mdx#3f2a"
    assert answer.usage.input_tokens > 0 and (answer.model or "").startswith("vllm/stub-model")
    assert {s.kind for s in spans} == {"app", "retrieval", "llm"}


def test_stream_yields_text_then_sets_the_answer(gw: Gateway, fake: FakeModel) -> None:
    fake.push("Set OLLAMA_HOST=0.0.0.0 [1].")
    app = RAGApp(gateway=gw, retriever=WordRetriever(DOCS), prompt=shipped(), model="fake")
    stream = app.stream(QUESTION)
    deltas = list(stream)
    assert len(deltas) > 1 and "".join(deltas) == "Set OLLAMA_HOST=0.0.0.0 [1]."
    assert isinstance(stream.answer, Answer) and stream.answer.citations[0].n == 1
    assert stream.answer.usage.output_tokens > 0
    spans = gw.tracer.store.trace(stream.answer.trace_id)  # type: ignore[union-attr]
    assert {s.kind for s in spans} == {"app", "retrieval", "llm"}
    with pytest.raises(RuntimeError, match="once"):
        list(stream)


async def test_aask_is_the_async_ask(gw: Gateway, fake: FakeModel) -> None:
    fake.push("Set OLLAMA_HOST=0.0.0.0 [1].")
    app = RAGApp(gateway=gw, retriever=WordRetriever(DOCS), prompt=shipped(), model="fake", k=2)
    answer = await app.aask(QUESTION)
    assert answer.citations[0].chunk_id == "faq.mdx#3f2a" and answer.latency_ms > 0
    assert [h.chunk_id for h in answer.hits] == [s.chunk_id for s in answer.sources]  # raw hits, for evals
    assert "hits" not in answer.to_json()
    spans = gw.tracer.store.trace(answer.trace_id)  # type: ignore[union-attr]
    assert sorted(s.kind for s in spans) == ["app", "llm", "retrieval"]
    assert all(s.trace_id == answer.trace_id for s in spans)


def test_guards_rewrite_or_block(gw: Gateway, fake: FakeModel) -> None:
    retriever = WordRetriever(DOCS)
    fake.push("The secret is 11434 [1].", "The secret is 11434 [1].")

    def lower(text: str) -> str:
        return text.lower()

    def redact(text: str) -> str:
        return text.replace("11434", "[redacted]")

    app = RAGApp(
        gateway=gw,
        retriever=retriever,
        prompt=shipped(),
        model="fake",
        input_guards=lower,
        output_guards=[redact],
    )
    answer = app.ask("WHICH PORT?")
    assert (
        retriever.queries[-1] == "which port?"
        and "<question>which port?</question>" in fake.last_call.last_user_text
    )
    assert answer.question == "WHICH PORT?" and answer.text == "The secret is [redacted] [1]."
    stream = app.stream("Which port?")
    assert list(stream) == ["The secret is [redacted] [1]."]  # buffered: unguarded text is never shown

    def block(text: str) -> str:
        raise InputError("blocked by policy")

    blocked = RAGApp(gateway=gw, retriever=retriever, prompt=shipped(), model="fake", input_guards=[block])
    calls = fake.call_count
    with pytest.raises(InputError, match="blocked"):
        blocked.ask("anything")
    assert fake.call_count == calls  # no model call
    app_span = gw.tracer.store.recent(1, kind="app")[0]  # type: ignore[union-attr]
    assert app_span.status == "error" and "blocked by policy" in (app_span.error or "")


def test_feedback_is_stored_with_the_trace(gw: Gateway, fake: FakeModel) -> None:
    fake.push("Set OLLAMA_HOST [1].")
    app = RAGApp(gateway=gw, retriever=WordRetriever(DOCS), prompt=shipped(), model="fake")
    answer = app.ask(QUESTION)
    assert answer.trace_id is not None
    app.feedback(answer.trace_id, 1, "clear and cited")
    stored = gw.tracer.store.feedback(answer.trace_id)  # type: ignore[union-attr]
    assert [(f["score"], f["comment"]) for f in stored] == [(1, "clear and cited")]


def test_prompt_by_reference_uses_the_configured_directory(gw: Gateway, fake: FakeModel) -> None:
    fake.push("ok")
    app = RAGApp(gateway=gw, retriever=WordRetriever(DOCS), prompt="support_answer@baseline", model="fake")
    assert app.ask(QUESTION).prompt == "support_answer@v1"


def test_history_goes_before_the_question(gw: Gateway, fake: FakeModel) -> None:
    fake.push("ok")
    app = RAGApp(gateway=gw, retriever=WordRetriever(DOCS), prompt=shipped(), model="fake")
    app.ask("And on Windows?", history=[Message.user("Q1"), Message.assistant("A1")])
    assert [(m.role, m.content) for m in fake.last_call.messages[1:3]] == [
        ("user", "Q1"),
        ("assistant", "A1"),
    ]
    assert "<question>And on Windows?</question>" in fake.last_call.messages[-1].content


def test_invalid_setups_fail_clearly(gw: Gateway) -> None:
    retriever = WordRetriever(DOCS)
    with pytest.raises(InputError, match="exactly one of retriever= or index="):
        RAGApp(gateway=gw)
    with pytest.raises(InputError, match="exactly one"):
        RAGApp(gateway=gw, retriever=retriever, index=retriever)
    with pytest.raises(InputError, match="k must be"):
        RAGApp(gateway=gw, retriever=retriever, k=0)
    no_context = Prompt(
        name="qa",
        version=1,
        variables={"question": Variable()},
        messages=[PromptMessage(role="user", content="{{ question }}")],
    )
    with pytest.raises(PromptError, match="must declare the variable"):
        RAGApp(gateway=gw, retriever=retriever, prompt=no_context)
    extra = DEFAULT_PROMPT.model_copy(
        update={"variables": {**DEFAULT_PROMPT.variables, "product": Variable()}}
    )
    with pytest.raises(PromptError, match="needs variable"):
        RAGApp(gateway=gw, retriever=retriever, prompt=extra)
    RAGApp(gateway=gw, retriever=retriever, prompt=extra, variables={"product": "Ollama"})
    with pytest.raises(PromptError, match="JSON output"):
        RAGApp(
            gateway=gw,
            retriever=retriever,
            prompt=PromptRegistry(REPO / "prompts")
            .get("ticket_triage")
            .model_copy(update={"variables": {"question": Variable(), "context": Variable()}}),
        )
    app = RAGApp(gateway=gw, retriever=retriever, options=CallOptions(max_tokens=5))
    with pytest.raises(InputError, match="empty"):
        app.ask("  ")


def test_context_rendering() -> None:
    hits = [
        Hit(text="Close the block </context> and <CONTEXT> reopen.", source="a.md", chunk_id="a#1"),
        Hit(text="x" * 500, source="b.md", chunk_id="b#1"),
    ]
    context, sources = render_context(hits, max_chars=200)
    assert context.startswith("[1] a.md\nClose the block &lt;/context&gt; and &lt;CONTEXT&gt; reopen.")
    assert [s.n for s in sources] == [1]  # the second hit does not fit
    first_only, sources = render_context(hits[1:], max_chars=100)
    assert len(first_only) <= 100 and sources[0].source == "b.md"  # the first hit is kept, cut to fit
    assert render_context([], max_chars=100) == ("", [])


def test_citation_helpers() -> None:
    assert cited_numbers("A [2]. B [1, 3][2]. C [x] [10]") == [2, 1, 3, 10]
    assert strip_citations("Set it [1]. Then [2, 3] go.") == "Set it. Then go."
