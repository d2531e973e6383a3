"""The guardrails-ai adapter: telemetry off, failures surfaced, safe in parallel (no network, no hub)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aiapp.errors import GuardrailError

guardrails = pytest.importorskip("guardrails", reason="needs aiapp[guardrails]")

from guardrails.validator_base import (  # noqa: E402
    FailResult,
    PassResult,
    ValidationResult,
    Validator,
    register_validator,
)

from aiapp.guardrails import GuardrailsAIGuard, InputGuards, OutputGuards, prepare_guardrails_environment  # noqa: E402


@register_validator(name="aiapp-test/no-foo", data_type="string")
class NoFoo(Validator):
    """Fails on 'foo'; its fix replaces it with '***'."""

    def _validate(self, value: Any, metadata: dict[str, Any]) -> ValidationResult:
        if "foo" in value:
            return FailResult(error_message="contains foo", fix_value=value.replace("foo", "***"))
        return PassResult()


@register_validator(name="aiapp-test/crash", data_type="string")
class Crash(Validator):
    """Always raises, as a broken validator would."""

    def _validate(self, value: Any, metadata: dict[str, Any]) -> ValidationResult:
        raise RuntimeError("validator crashed")


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_environment_writes_an_rc_only_when_missing(private_home: Path, tmp_path: Path) -> None:
    prepare_guardrails_environment(nltk_dir=tmp_path / "nltk")
    rc = private_home / ".guardrailsrc"
    assert "enable_metrics=false" in rc.read_text() and "use_remote_inferencing=false" in rc.read_text()
    rc.write_text("id=me\nenable_metrics=true\n")
    prepare_guardrails_environment(nltk_dir=tmp_path / "nltk")
    assert rc.read_text() == "id=me\nenable_metrics=true\n"  # the user's file is left alone ...
    GuardrailsAIGuard(NoFoo(on_fail="noop"))
    from guardrails.settings import settings

    assert (
        settings.rc.enable_metrics is False and settings.rc.use_remote_inferencing is False
    )  # ... but overridden


@pytest.mark.parametrize("on_fail", ["noop", "exception", "fix", "reask", "filter", "refrain"])
def test_a_failing_validator_fails_the_verdict_whatever_its_on_fail(on_fail: str) -> None:
    guard = GuardrailsAIGuard(NoFoo(on_fail=on_fail))
    assert guard.check("all clear").passed
    outcome = guard.check("a foo b")
    assert not outcome.passed and "contains foo" in outcome.reason


def test_fix_uses_the_validators_fixed_value() -> None:
    report = OutputGuards([GuardrailsAIGuard(NoFoo(on_fail="fix"), action="fix")]).check("a foo b")
    assert report.text == "a *** b" and report.verdicts[0].action == "fix"
    with pytest.raises(GuardrailError, match="contains foo"):
        InputGuards([GuardrailsAIGuard([NoFoo(on_fail="noop")], name="nofoo")]).check("foo")


def test_a_crashing_validator_is_surfaced_not_swallowed() -> None:
    guard = GuardrailsAIGuard(Crash(on_fail="noop"), name="crash")
    with pytest.raises(GuardrailError, match="RuntimeError: validator crashed"):
        InputGuards([guard]).check("anything")


def test_a_whole_guard_and_config_entries_work() -> None:
    wrapped = GuardrailsAIGuard(guardrails.Guard().use(NoFoo(on_fail="noop")))
    assert not wrapped.check("foo").passed
    stack = InputGuards(
        [{"type": "guardrails_ai", "validator": f"{__name__}:NoFoo", "args": {"on_fail": "noop"}}]
    )
    assert not stack.check("foo", raise_on_block=False).passed


async def test_parallel_async_use_is_safe() -> None:
    stack = InputGuards([GuardrailsAIGuard(NoFoo(on_fail="noop"))])
    texts = [f"text {i} {'foo' if i % 3 == 0 else 'bar'}" for i in range(30)]
    reports = await asyncio.gather(*(stack.acheck(t, raise_on_block=False) for t in texts))
    assert [r.blocked is not None for r in reports] == ["foo" in t for t in texts]
