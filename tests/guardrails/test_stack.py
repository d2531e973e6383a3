"""Stacks apply actions in order and report one verdict per guard; configs are checked."""

from __future__ import annotations

import pytest

from aiapp.errors import ConfigError, GuardrailError
from aiapp.guardrails import (
    Guard,
    GuardContext,
    InputGuards,
    Outcome,
    OutputGuards,
    build_guard,
    check_output,
    guard_types,
    register_guard,
)


def test_redact_is_reversible_on_input_only() -> None:
    report = InputGuards(["pii"]).check("mail ada@example.com and ada@example.com, or bob@example.com")
    assert report.text == "mail [EMAIL_ADDRESS_1] and [EMAIL_ADDRESS_1], or [EMAIL_ADDRESS_2]"
    assert report.restore("ok [EMAIL_ADDRESS_2]") == "ok bob@example.com"
    out = OutputGuards(["pii"]).check("reach me at eve@example.com")
    assert out.text == "reach me at [EMAIL_ADDRESS_1]"
    assert out.restore(out.text) == out.text  # output redactions are final


def test_block_raises_with_guard_name_and_reason() -> None:
    stack = InputGuards([{"type": "banlist", "words": ["project x"]}, "pii"])
    with pytest.raises(GuardrailError) as caught:
        stack.check("tell me about Project  X")
    assert caught.value.guard == "banlist" and "banned" in caught.value.reason
    report = stack.check("tell me about Project X", raise_on_block=False)
    assert report.blocked is not None and report.blocked.action == "block"
    assert [v.name for v in report.verdicts] == ["banlist"]  # the stack stops at a block


def test_fix_fallback_and_flag() -> None:
    fixed = InputGuards([{"type": "limits", "max_chars": 5, "action": "fix"}]).check("abcdefgh")
    assert fixed.text == "abcde" and fixed.verdicts[0].action == "fix"
    fallback = InputGuards([{"type": "topics", "denied": {"legal": ["lawsuit"]}}], fallback="No.").check(
        "a lawsuit?"
    )
    assert fallback.fallback == "No." and fallback.verdicts[0].action == "fallback"
    flagged = InputGuards([{"type": "limits", "max_tokens": 2, "action": "flag"}]).check("one two three four")
    assert (
        flagged.text == "one two three four" and not flagged.passed and flagged.verdicts[0].action == "flag"
    )


def test_verdicts_carry_latency_and_no_sensitive_values() -> None:
    report = check_output(
        "key sk-proj-AbCdEf1234567890XyZaBcDeF", OutputGuards([{"type": "secrets", "action": "redact"}])
    )
    [verdict] = report.verdicts
    trace = verdict.to_trace()
    assert trace["action"] == "redact" and trace["latency_ms"] >= 0
    assert "AbCdEf" not in str(trace) and report.text == "key [SECRET_1]"


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown guard type 'nope'"):
        InputGuards(["nope"])
    with pytest.raises(ConfigError, match="cannot 'redact'"):
        build_guard({"type": "injection", "action": "redact"})
    with pytest.raises(ConfigError, match="unexpected keyword"):
        build_guard({"type": "pii", "colour": "blue"})
    with pytest.raises(ConfigError, match="reask only applies to output"):
        InputGuards([{"type": "pii", "action": "reask"}])
    with pytest.raises(ConfigError, match="cannot run on input"):
        InputGuards(["json"])


def test_custom_guards_register_by_decorator() -> None:
    @register_guard("no_shouting")
    class NoShouting(Guard):
        kind = "no_shouting"

        def evaluate(self, text: str, context: GuardContext) -> Outcome:
            return Outcome(passed=not text.isupper(), reason="all caps")

    assert "no_shouting" in guard_types()
    with pytest.raises(GuardrailError, match="all caps"):
        InputGuards(["no_shouting"]).check("HELLO")


def test_stacks_work_as_str_hooks() -> None:
    inputs = InputGuards(["pii", {"type": "topics", "denied": {"legal": ["lawsuit"]}}])
    assert inputs("mail ada@example.com") == "mail [EMAIL_ADDRESS_1]"
    with pytest.raises(GuardrailError, match="denied topic"):
        inputs("about the lawsuit")
    outputs = OutputGuards([{"type": "banlist", "words": ["darn"], "action": "fallback"}], fallback="Sorry.")
    assert outputs("well darn") == "Sorry."
