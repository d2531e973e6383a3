"""The litellm provider, run for real against the local stub server (no network)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aiapp.errors import ProviderServerError, RateLimitError
from aiapp.gateway.providers.litellm import LiteLLMModel
from aiapp.testing import StubServer
from aiapp.types import CallOptions, Message, ToolCall, ToolSpec


def model(stub: StubServer) -> LiteLLMModel:
    # litellm's openai/ prefix with an api_base reaches any OpenAI-compatible server.
    return LiteLLMModel("openai/stub-model", api_base=stub.base_url, api_key_env="STUB_KEY", timeout_s=5)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-stub")


def test_complete_through_litellm(stub: StubServer) -> None:
    reply = model(stub).complete([Message.user("via litellm")], CallOptions(max_tokens=5))
    assert reply.text == "stub reply: via litellm"
    assert reply.usage.input_tokens > 0
    assert stub.requests()[-1]["max_tokens"] == 5


def test_stream_through_litellm(stub: StubServer) -> None:
    chunks = list(model(stub).stream([Message.user("streaming via litellm")]))
    assert "".join(c.delta for c in chunks) == "stub reply: streaming via litellm"
    assert chunks[-1].usage is not None


def test_tool_calls_through_litellm(stub: StubServer) -> None:
    stub.queue_replies([ToolCall(id="c1", name="lookup", arguments='{"q": "x"}')])
    tool = ToolSpec(name="lookup", parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    reply = model(stub).complete([Message.user("look it up")], CallOptions(tools=(tool,)))
    assert reply.tool_calls[0].name == "lookup" and reply.tool_calls[0].parsed_arguments() == {"q": "x"}


async def test_async_through_litellm(stub: StubServer) -> None:
    reply = await model(stub).acomplete([Message.user("async litellm")])
    assert reply.text == "stub reply: async litellm"


def test_litellm_errors_map_by_type_and_status(stub: StubServer) -> None:
    stub.inject("429", retry_after=3)
    with pytest.raises(RateLimitError) as info:
        model(stub).complete([Message.user("hi")])
    assert info.value.retryable and info.value.deployment == "openai/stub-model"
    assert info.value.retry_after == 3
    stub.inject("500")
    with pytest.raises(ProviderServerError):
        model(stub).complete([Message.user("hi")])
    assert stub.stats()["requests"] == 2  # litellm's own retries are off: the router owns retries


def test_importing_the_provider_keeps_litellm_offline() -> None:
    code = (
        "import os; from aiapp.gateway.providers.litellm import import_litellm; import_litellm();"
        "print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP'])"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "True"
