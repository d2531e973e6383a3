"""The guardrails-ai adapter: telemetry off, failures surfaced, safe in parallel (no network, no hub).

guardrails-ai reads ``~/.guardrailsrc`` and checks nltk data when first imported, so this module
imports it only inside fixtures, after ``HOME`` points at a temporary folder.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from aiapp.errors import GuardrailError
from aiapp.guardrails import GuardrailsAIGuard, InputGuards, OutputGuards, prepare_guardrails_environment

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("guardrails") is None, reason="needs aiapp[guardrails]"
)


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HOME; NLTK_DATA is restored after the test whatever the adapter sets."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NLTK_DATA", raising=False)
    return home


@functools.cache
def _validators() -> tuple[type[Any], type[Any]]:
    prepare_guardrails_environment()
    from guardrails.validator_base import (
        FailResult,
        PassResult,
        ValidationResult,
        Validator,
        register_validator,
    )

    @register_validator(name="aiapp-test/no-foo", data_type="string")
    class NoFoo(Validator):  # type: ignore[misc]
        """Fails on 'foo'; its fix replaces it with '***'."""

        def _validate(self, value: Any, metadata: dict[str, Any]) -> ValidationResult:
            if "foo" in value:
                return FailResult(error_message="contains foo", fix_value=value.replace("foo", "***"))
            return PassResult()

    @register_validator(name="aiapp-test/crash", data_type="string")
    class Crash(Validator):  # type: ignore[misc]
        """Always raises, as a broken validator would."""

        def _validate(self, value: Any, metadata: dict[str, Any]) -> ValidationResult:
            raise RuntimeError("validator crashed")

    globals()["NoFoo"] = NoFoo  # importable as <this module>:NoFoo for the config test
    return NoFoo, Crash


@pytest.fixture
def no_foo(private_home: Path) -> type[Any]:
    return _validators()[0]


@pytest.fixture
def crash(private_home: Path) -> type[Any]:
    return _validators()[1]


def test_environment_writes_an_rc_only_when_missing(
    private_home: Path, tmp_path: Path, no_foo: type[Any]
) -> None:
    rc = private_home / ".guardrailsrc"
    prepare_guardrails_environment(nltk_dir=tmp_path / "nltk")
    assert "enable_metrics=false" in rc.read_text() and "use_remote_inferencing=false" in rc.read_text()
    rc.write_text("id=me\nenable_metrics=true\n")
    prepare_guardrails_environment(nltk_dir=tmp_path / "nltk")
    assert rc.read_text() == "id=me\nenable_metrics=true\n"  # the user's file is left alone ...
    GuardrailsAIGuard(no_foo(on_fail="noop"))
    from guardrails.settings import settings

    assert (
        settings.rc.enable_metrics is False and settings.rc.use_remote_inferencing is False
    )  # ... but overridden


@pytest.mark.parametrize("on_fail", ["noop", "exception", "fix", "reask", "filter", "refrain"])
def test_a_failing_validator_fails_the_verdict_whatever_its_on_fail(on_fail: str, no_foo: type[Any]) -> None:
    guard = GuardrailsAIGuard(no_foo(on_fail=on_fail))
    assert guard.check("all clear").passed
    outcome = guard.check("a foo b")
    assert not outcome.passed and "contains foo" in outcome.reason


def test_fix_uses_the_validators_fixed_value(no_foo: type[Any]) -> None:
    report = OutputGuards([GuardrailsAIGuard(no_foo(on_fail="fix"), action="fix")]).check("a foo b")
    assert report.text == "a *** b" and report.verdicts[0].action == "fix"
    with pytest.raises(GuardrailError, match="contains foo"):
        InputGuards([GuardrailsAIGuard([no_foo(on_fail="noop")], name="nofoo")]).check("foo")


def test_a_crashing_validator_is_surfaced_not_swallowed(crash: type[Any]) -> None:
    guard = GuardrailsAIGuard(crash(on_fail="noop"), name="crash")
    with pytest.raises(GuardrailError, match="RuntimeError: validator crashed"):
        InputGuards([guard]).check("anything")


def test_a_whole_guard_and_config_entries_work(no_foo: type[Any]) -> None:
    import guardrails

    wrapped = GuardrailsAIGuard(guardrails.Guard().use(no_foo(on_fail="noop")))
    assert not wrapped.check("foo").passed
    stack = InputGuards(
        [{"type": "guardrails_ai", "validator": f"{__name__}:NoFoo", "args": {"on_fail": "noop"}}]
    )
    assert not stack.check("foo", raise_on_block=False).passed


async def test_parallel_async_use_is_safe(no_foo: type[Any]) -> None:
    stack = InputGuards([GuardrailsAIGuard(no_foo(on_fail="noop"))])
    texts = [f"text {i} {'foo' if i % 3 == 0 else 'bar'}" for i in range(30)]
    reports = await asyncio.gather(*(stack.acheck(t, raise_on_block=False) for t in texts))
    assert [r.blocked is not None for r in reports] == ["foo" in t for t in texts]
