"""The Langfuse exporter against a loopback stand-in for the Langfuse host: what the SDK sends
(OTLP spans with Langfuse's observation attributes, Basic auth) and scores on Langfuse's score API."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_export_otlp import FixedRetriever, OtlpReceiver

from aiapp.apps import RAGApp
from aiapp.config import PromptSettings, Settings, TracingSettings
from aiapp.gateway import Gateway
from aiapp.prompts import PromptRegistry
from aiapp.testing import FakeModel

REPO = Path(__file__).resolve().parents[2]
PUBLIC, SECRET = "pk-lf-test", "sk-lf-test"
TRACES = "/api/public/otel/v1/traces"
SCORES = "/api/public/scores"


@pytest.fixture(scope="module")
def _host() -> Iterator[OtlpReceiver]:
    # One host for the module: the SDK keeps one client per public key for the whole process.
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def langfuse_host(_host: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> OtlpReceiver:
    _host.reset()
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PUBLIC)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRET)
    monkeypatch.setenv("LANGFUSE_HOST", _host.url)
    monkeypatch.delenv("LANGFUSE_BASE_URL", raising=False)
    return _host


def _gateway(fake: FakeModel, **tracing: object) -> Gateway:
    settings = Settings(
        prompts=PromptSettings(dir=REPO / "prompts"),
        tracing=TracingSettings(export="langfuse", **tracing),  # type: ignore[arg-type]
    )
    return Gateway(settings, models={"fake": fake})


def test_a_rag_answer_arrives_as_a_langfuse_trace_with_a_generation(langfuse_host: OtlpReceiver) -> None:
    fake = FakeModel(["Set OLLAMA_HOST=0.0.0.0 [1]."])
    with _gateway(fake, capture="full", export_content=True) as gw:
        prompt = PromptRegistry(REPO / "prompts").get("support_answer")
        app = RAGApp(gateway=gw, retriever=FixedRetriever(), prompt=prompt, model="fake")
        answer = app.ask("How do I listen on all interfaces?")
        stored = gw.tracer.store.trace(answer.trace_id)  # type: ignore[union-attr]
        assert gw.tracer.flush_exports()
    assert langfuse_host.wait_for(lambda r: len(r.spans) >= len(stored))
    [(_, _, headers, _), *_] = [r for r in langfuse_host.requests if r[1] == TRACES]
    assert headers["authorization"] == "Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
    spans = {s["span_id"]: s for s in langfuse_host.spans}
    for record in stored:
        span = spans[record.span_id]
        assert span["trace_id"] == "0" * 16 + answer.trace_id and span["parent_id"] == record.parent_id
        assert span["scope"]["name"] == "langfuse-sdk" and span["scope"]["attributes"]["public_key"] == PUBLIC
    generation = next(s for s in langfuse_host.spans if s["attributes"].get("aiapp.span.kind") == "llm")
    a = generation["attributes"]
    llm = next(r for r in stored if r.kind == "llm")
    assert a["langfuse.observation.type"] == "generation"
    assert a["langfuse.observation.model.name"] == llm.model
    usage = json.loads(a["langfuse.observation.usage_details"])
    assert usage == {
        "input": llm.input_tokens,
        "output": llm.output_tokens,
        "total": llm.input_tokens + llm.output_tokens,
    }  # type: ignore[operator]
    assert json.loads(a["langfuse.observation.cost_details"]) == {"total": 0.0}
    assert a["langfuse.observation.prompt.name"] == prompt.name
    assert a["langfuse.observation.prompt.version"] == prompt.version
    assert "Set OLLAMA_HOST" in a["langfuse.observation.output"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.response.finish_reasons"] == ["stop"]
    root = spans[answer.trace_id]
    assert root["attributes"]["langfuse.trace.name"] == app.name
    assert root["attributes"]["langfuse.observation.type"] == "chain"
    retriever = next(s for s in langfuse_host.spans if s["attributes"].get("aiapp.span.kind") == "retrieval")
    assert retriever["attributes"]["langfuse.observation.type"] == "retriever"


def test_scores_and_feedback_become_langfuse_scores(langfuse_host: OtlpReceiver) -> None:
    fake = FakeModel(["Paris."])
    with _gateway(fake, capture="full", export_content=True) as gw:
        reply = gw.complete("Capital of France?", model="fake")
        gw.tracer.export_score(reply.trace_id, "feedback", 1.0, comment="spot on", source="user")
        gw.tracer.export_score(reply.trace_id, "faithfulness", 0.75, source="online", span_id=reply.trace_id)
        assert gw.tracer.flush_exports()
    assert langfuse_host.wait_for(lambda r: len(r.json_items(SCORES)) >= 2)
    scores = {body["name"]: body for body in langfuse_host.json_items(SCORES)}
    feedback = scores["feedback"]
    assert feedback["traceId"] == "0" * 16 + reply.trace_id
    assert (feedback["value"], feedback["dataType"], feedback["comment"]) == (1.0, "NUMERIC", "spot on")
    assert feedback["metadata"] == {"source": "user"} and "observationId" not in feedback
    online = scores["faithfulness"]
    assert online["observationId"] == reply.trace_id and online["value"] == 0.75
    score_requests = [r for r in langfuse_host.requests if r[1] == SCORES]
    expected = "Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
    assert all(headers["authorization"] == expected for _, _, headers, _ in score_requests)
    # the same score also travels as a gen_ai.evaluation.result event on an evaluator observation
    evaluation = next(s for s in langfuse_host.spans if s["name"] == "evaluation feedback")
    assert evaluation["attributes"]["langfuse.observation.type"] == "evaluator"
    assert evaluation["events"][0][0] == "gen_ai.evaluation.result"


def test_without_content_opt_in_no_input_or_output_leaves(langfuse_host: OtlpReceiver) -> None:
    fake = FakeModel(["Paris."])
    with _gateway(fake) as gw:
        reply = gw.complete("Capital of France?", model="fake")
        gw.tracer.export_score(reply.trace_id, "feedback", -1.0, comment="private words")
        assert gw.tracer.flush_exports()
    assert langfuse_host.wait_for(lambda r: bool(r.json_items(SCORES)))
    wire = b"".join(r[3] for r in langfuse_host.requests)
    assert b"Capital of France" not in wire and b"Paris." not in wire and b"private words" not in wire
    [generation] = [s for s in langfuse_host.spans if s["attributes"].get("aiapp.span.kind") == "llm"]
    assert "langfuse.observation.input" not in generation["attributes"]
