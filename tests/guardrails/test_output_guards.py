"""JSON validity (with local repair) and grounding in the retrieved context."""

from __future__ import annotations

from aiapp.guardrails import GroundingGuard, JSONGuard, OutputGuards
from aiapp.types import Message

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def test_json_guard() -> None:
    guard = JSONGuard(schema=SCHEMA)
    assert guard.check('```json\n{"answer": "ok"}\n```', stage="output").passed
    fixable = guard.check('Here you go: {"answer": "ok",} hope it helps', stage="output")
    assert not fixable.passed and fixable.fixed == '{"answer": "ok"}'
    wrong = guard.check('{"result": 1}', stage="output")
    assert not wrong.passed and wrong.fixed is None and "required" in wrong.reason
    assert "not valid JSON" in guard.check("nope", stage="output").reason
    report = OutputGuards([guard]).check('Sure! {"answer": "42"}')
    assert report.text == '{"answer": "42"}' and report.verdicts[0].action == "fix"


CONTEXT = (
    "Set OLLAMA_HOST=0.0.0.0 to make Ollama listen on all network interfaces. "
    "The default port is 11434. Restart the service after changing the variable."
)


def test_grounding_flags_unsupported_sentences() -> None:
    guard = GroundingGuard()
    answer = (
        "Set OLLAMA_HOST to 0.0.0.0 so Ollama listens on all interfaces. "
        "The default port is 11434. "
        "Ollama was written by a team in Antarctica during the winter of 1912."
    )
    outcome = guard.check(answer, stage="output", documents=[CONTEXT])
    assert not outcome.passed and outcome.details["unsupported"] == [2]
    assert outcome.fixed is not None and "Antarctica" not in outcome.fixed
    report = OutputGuards([guard]).check(answer, documents=[CONTEXT])
    assert report.text == answer and report.verdicts[0].action == "flag"


def test_grounding_reads_context_tags_and_passes_without_context() -> None:
    guard = GroundingGuard()
    messages = [Message.user(f"<context>{CONTEXT}</context> Which port?")]
    assert guard.check("The default port is 11434.", stage="output", messages=messages).passed
    assert guard.check("Anything at all goes here today.", stage="output").details == {
        "skipped": "no context"
    }
