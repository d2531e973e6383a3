"""Structured output: schema validation, one bounded repair attempt, errors that keep the raw reply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from aiapp.config import Deployment, Route, Settings
from aiapp.errors import OutputParseError
from aiapp.gateway import Gateway
from aiapp.prompts import (
    OutputSpec,
    Prompt,
    PromptMessage,
    PromptRegistry,
    Variable,
    complete_structured,
    parse_output,
)
from aiapp.testing import FakeModel, StubServer

REPO = Path(__file__).resolve().parents[2]

TRIAGE = Prompt(
    name="triage",
    version=3,
    model="fake",
    variables={"ticket": Variable()},
    messages=[PromptMessage(role="user", content="Classify: {{ ticket }}")],
    output=OutputSpec(
        type="json",
        json_schema={
            "type": "object",
            "required": ["category", "urgency"],
            "additionalProperties": False,
            "properties": {"category": {"type": "string"}, "urgency": {"enum": ["low", "high"]}},
        },
    ),
)


class Ticket(BaseModel):
    category: str
    urgency: str


@pytest.fixture
def fake() -> FakeModel:
    return FakeModel()


@pytest.fixture
def gw(fake: FakeModel) -> Iterator[Gateway]:
    with Gateway(models={"fake": fake}) as gateway:
        yield gateway


def test_a_valid_reply_is_returned_in_one_attempt(gw: Gateway, fake: FakeModel) -> None:
    fake.push('```json\n{"category": "gpu", "urgency": "high"}\n```')
    result = complete_structured(gw, TRIAGE, {"ticket": "GPU gone"})
    assert result.data == {"category": "gpu", "urgency": "high"} and result.attempts == 1
    sent = fake.last_call
    assert sent.messages[-1].content == "Classify: GPU gone"
    assert sent.options.response_format is not None
    assert sent.options.response_format.json_schema == TRIAGE.output.json_schema
    spans = gw.tracer.store.trace(result.trace_id)  # type: ignore[union-attr]
    assert {s.kind for s in spans} == {"app", "llm"}
    assert all(s.prompt_ref == "triage@v3" and s.prompt_hash == TRIAGE.content_hash for s in spans)


def test_invalid_json_gets_one_repair_attempt_with_the_error(gw: Gateway, fake: FakeModel) -> None:
    fake.push('{"category": "gpu", urgency: high}', '{"category": "gpu", "urgency": "high"}')
    result = complete_structured(gw, TRIAGE, {"ticket": "GPU gone"}, output_type=Ticket)
    assert result.data == Ticket(category="gpu", urgency="high") and result.attempts == 2
    repair = fake.last_call.messages
    assert repair[-2].role == "assistant" and repair[-2].content == '{"category": "gpu", urgency: high}'
    assert repair[-1].role == "user" and "not valid JSON" in repair[-1].content
    spans = gw.tracer.store.trace(result.trace_id)  # type: ignore[union-attr]
    assert [s.kind for s in spans].count("llm") == 2  # both attempts in one trace
    app = next(s for s in spans if s.kind == "app")
    assert app.attributes["attempts"] == 2 and "not valid JSON" in app.attributes["repair"]


def test_a_schema_violation_is_sent_back_and_a_second_failure_keeps_the_raw_reply(
    gw: Gateway, fake: FakeModel
) -> None:
    fake.push('{"category": "gpu", "urgency": "urgent"}', '{"category": "gpu"}')
    with pytest.raises(OutputParseError) as error:
        complete_structured(gw, TRIAGE, {"ticket": "GPU gone"})
    assert fake.call_count == 2  # bounded: exactly one repair
    assert "'urgent' is not one of ['low', 'high']" in fake.last_call.messages[-1].content
    assert error.value.raw == '{"category": "gpu"}'
    message = str(error.value)
    assert "triage@v3" in message and "after one repair attempt" in message
    assert "'urgency' is a required property" in message


def test_repair_can_be_turned_off(gw: Gateway, fake: FakeModel) -> None:
    fake.push("not json")
    with pytest.raises(OutputParseError) as error:
        complete_structured(gw, TRIAGE, {"ticket": "x"}, repair=False)
    assert error.value.raw == "not json" and fake.call_count == 1


def test_output_type_alone_supplies_the_schema(gw: Gateway, fake: FakeModel) -> None:
    plain = Prompt(name="p", version=1, model="fake", messages=[PromptMessage(role="user", content="hi")])
    fake.push('{"category": "a", "urgency": "low"}')
    result = complete_structured(gw, plain, output_type=Ticket)
    assert result.data.urgency == "low"
    fmt = fake.last_call.options.response_format
    assert fmt is not None and fmt.name == "Ticket"


def test_parse_output_without_a_schema_only_needs_json() -> None:
    plain = Prompt(name="p", version=1, messages=[PromptMessage(role="user", content="hi")])
    assert parse_output(plain, "[1, 2]") == [1, 2]
    with pytest.raises(OutputParseError, match="not valid JSON"):
        parse_output(plain, "[1, 2")


def test_structured_output_through_the_stub_server(stub: StubServer, tmp_path: Path) -> None:
    """The shipped ticket_triage prompt over a real OpenAI-compatible HTTP path, repaired once."""
    route = Route(deployments=[Deployment(model="vllm/stub-model", api_base=stub.base_url, timeout_s=5)])
    prompt = PromptRegistry(REPO / "prompts").get("ticket_triage")
    stub.queue_replies(
        '{"category": "gpu", "urgency": "high"}',  # missing "summary"
        '{"category": "gpu", "urgency": "high", "summary": "GPU not used after update."}',
    )
    with Gateway(Settings(routes={"stub": route})) as gw:
        result = complete_structured(gw, prompt, {"ticket": "My GPU is not used."}, model="stub")
    assert result.attempts == 2 and result.data["summary"] == "GPU not used after update."
    first, second = stub.requests("chat")
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"] == prompt.output.json_schema
    assert "'summary' is a required property" in second["messages"][-1]["content"]
    # The few-shot example went out as a user/assistant pair before the real ticket.
    roles = [m["role"] for m in first["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert json.loads(first["messages"][2]["content"])["category"] == "gpu"
