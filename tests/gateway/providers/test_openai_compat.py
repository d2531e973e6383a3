"""The OpenAI-compatible fast path, run for real against the local stub server."""

from __future__ import annotations

import pytest

from aiapp.config import Deployment, Route, Settings
from aiapp.errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
)
from aiapp.gateway import Gateway
from aiapp.gateway.providers.openai_compat import OpenAICompatibleModel
from aiapp.testing import StubServer
from aiapp.types import CallOptions, Message, ResponseFormat, ToolCall, ToolSpec

WEATHER = ToolSpec(
    name="weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def model(stub: StubServer, name: str = "vllm/stub-model", **kw: object) -> OpenAICompatibleModel:
    return OpenAICompatibleModel(name, api_base=stub.base_url, timeout_s=5, **kw)  # type: ignore[arg-type]


def test_complete_sends_options_and_reports_usage_and_cost(stub: StubServer) -> None:
    m = model(stub, "openai/gpt-4o-mini", api_key="sk-test")
    reply = m.complete([Message.user("hello there")], CallOptions(temperature=0.1, max_tokens=7, seed=3))
    assert reply.text == "stub reply: hello there"
    sent = stub.requests()[-1]
    assert sent["model"] == "gpt-4o-mini"  # provider prefix stripped on the wire
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.1, 7, 3)
    assert reply.usage.input_tokens == 2 and reply.usage.output_tokens > 0
    assert reply.usage.cost_usd is not None and reply.usage.cost_usd > 0  # priced from litellm's table


def test_unpriced_model_has_unknown_cost_not_zero(stub: StubServer) -> None:
    reply = model(stub, "vllm/some-private-model").complete([Message.user("hi")])
    assert reply.usage.cost_usd is None


def test_stream_assembles_text_and_usage(stub: StubServer) -> None:
    chunks = list(model(stub).stream([Message.user("one two three")]))
    text = "".join(c.delta for c in chunks)
    assert text == "stub reply: one two three"
    assert len(chunks) > 3
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.usage is not None and final.usage.output_tokens > 0


def test_tool_calls_round_trip(stub: StubServer) -> None:
    stub.queue_replies([ToolCall(id="call_1", name="weather", arguments='{"city": "Oslo"}')])
    reply = model(stub).complete([Message.user("weather in Oslo?")], CallOptions(tools=(WEATHER,)))
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls[0].name == "weather"
    assert reply.tool_calls[0].parsed_arguments() == {"city": "Oslo"}
    assert stub.requests()[-1]["tools"][0]["function"]["name"] == "weather"
    # the conversation continues with the tool result
    follow = [Message.user("weather in Oslo?"), reply.message(), Message.tool("12C", tool_call_id="call_1")]
    model(stub).complete(follow)
    sent = stub.requests()[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1" and sent[2]["tool_call_id"] == "call_1"


def test_streamed_tool_calls_are_assembled(stub: StubServer) -> None:
    stub.queue_replies([ToolCall(id="call_9", name="weather", arguments='{"city": "Lima"}')])
    chunks = list(model(stub).stream([Message.user("Lima?")], CallOptions(tools=(WEATHER,))))
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls == (ToolCall(id="call_9", name="weather", arguments='{"city": "Lima"}'),)


def test_json_output_parses(stub: StubServer) -> None:
    reply = model(stub).complete(
        [Message.user("hi")], CallOptions(response_format=ResponseFormat(type="json_object"))
    )
    assert "answer" in reply.json_data()
    assert stub.requests()[-1]["response_format"] == {"type": "json_object"}


async def test_async_complete_and_stream(stub: StubServer) -> None:
    m = model(stub)
    assert (await m.acomplete([Message.user("async")])).text == "stub reply: async"
    text = "".join([c.delta async for c in m.astream([Message.user("async stream")])])
    assert text == "stub reply: async stream"


@pytest.mark.parametrize(
    ("mode", "params", "error", "retryable"),
    [
        ("429", {"retry_after": 7}, RateLimitError, True),
        ("500", {}, ProviderServerError, True),
        ("garbage", {}, MalformedResponseError, True),
        ("status", {"status": 401}, AuthenticationError, False),
        ("status", {"status": 400}, BadRequestError, False),
        ("status", {"status": 503}, ProviderServerError, True),
    ],
)
def test_faults_map_onto_the_error_tree(
    stub: StubServer, mode: str, params: dict[str, int], error: type[Exception], retryable: bool
) -> None:
    stub.inject(mode, **params)
    with pytest.raises(error) as info:
        model(stub).complete([Message.user("hi")])
    assert info.value.retryable is retryable  # type: ignore[attr-defined]
    assert info.value.deployment == "vllm/stub-model"  # type: ignore[attr-defined]
    if mode == "429":
        assert info.value.retry_after == 7  # type: ignore[attr-defined]


def test_timeout_maps_to_provider_timeout(stub: StubServer) -> None:
    stub.inject("timeout", seconds=2)
    with pytest.raises(ProviderTimeoutError):
        model(stub).complete([Message.user("hi")], CallOptions(timeout_s=0.3))


def test_stream_cut_mid_way_is_malformed(stub: StubServer) -> None:
    stub.inject("cut")
    with pytest.raises(MalformedResponseError):
        list(model(stub).stream([Message.user("a fairly long message to stream back")]))


def test_missing_openai_key_is_a_clear_non_retryable_error() -> None:
    with pytest.raises(AuthenticationError, match="set the environment variable OPENAI_API_KEY"):
        OpenAICompatibleModel("openai/gpt-4o-mini").complete([Message.user("hi")])


def test_gateway_fails_over_from_a_faulty_deployment(stub: StubServer) -> None:
    route = Route(
        deployments=[
            Deployment(model="vllm/primary", api_base=stub.base_url, timeout_s=5),
            Deployment(model="vllm/backup", api_base=stub.base_url, timeout_s=5),
        ]
    )
    gw = Gateway(Settings(routes={"pair": route}))
    stub.inject("500", model="primary")
    reply = gw.complete("hi", model="pair")
    assert reply.deployment.startswith("vllm/backup")  # type: ignore[union-attr]
    assert reply.attempts == 2

    stub.inject("500", model="primary")
    stub.inject("429", model="backup", retry_after=1)
    with pytest.raises(AllDeploymentsFailedError) as info:
        gw.complete("hi", model="pair")
    assert [type(f.error) for f in info.value.failures] == [ProviderServerError, RateLimitError]
    assert "route 'pair'" in str(info.value)
