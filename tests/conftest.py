"""Shared fixtures: every test gets its own AIAPP_HOME; provider tests share one stub server."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]

# State written outside a test's own home (session fixtures, the ONNX graph built once per run)
# goes to a throwaway folder, never the developer's ~/.aiapp; each test still gets its own.
os.environ["AIAPP_HOME"] = tempfile.mkdtemp(prefix="aiapp-tests-")


@pytest.fixture(autouse=True)
def aiapp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state directory, and no stray config or keys from the developer's shell."""
    home = tmp_path / "aiapp-home"
    monkeypatch.setenv("AIAPP_HOME", str(home))
    for var in (
        "AIAPP_CONFIG",
        "AIAPP_DEFAULT_ROUTE",
        "AIAPP_TRACING",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(autouse=True, scope="session")
def _no_real_provider_calls() -> Iterator[None]:
    """Nothing in the suite may reach a real provider; the loopback stub server stays allowed."""
    from aiapp.testing import block_provider_calls

    with block_provider_calls():
        yield


@pytest.fixture(scope="session")
def _stub_session() -> Iterator[object]:
    from aiapp.testing import StubServer

    with StubServer() as server:
        yield server


@pytest.fixture
def stub(_stub_session: object) -> Iterator[object]:
    """The shared OpenAI-compatible stub server, reset before each test."""
    _stub_session.reset()  # type: ignore[attr-defined]
    yield _stub_session
