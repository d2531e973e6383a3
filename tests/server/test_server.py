"""`aiapp serve` with the official openai client against the app on 127.0.0.1, upstream = the stub."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from aiapp.gateway import Gateway
from aiapp.testing import StubServer
from aiapp.types import ToolCall

if TYPE_CHECKING:
    from server_fixtures import Served

pytest_plugins = ["server_fixtures"]


def client(served: Served, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, **kw)


def good_request(served: Served, stub: StubServer) -> None:
    """After every bad input, the server still serves."""
    stub.queue_replies("still here")
    reply = client(served).chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "still here"


def post(served: Served, path: str, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        served.url + path, content=content, headers={"content-type": "application/json", **headers}
    )


def assert_error_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert response.headers["x-request-id"]
    return dict(error)


# -- chat --------------------------------------------------------------------------------------


def test_sync_chat_with_the_openai_client(served: Served, stub: StubServer) -> None:
    stub.queue_replies("Rotate it under Settings.")
    raw = client(served).chat.completions.with_raw_response.create(
        model="stub",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "key?"}],
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "Rotate it under Settings."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "stub"
    assert reply.usage is not None and reply.usage.total_tokens > 0
    assert raw.headers["x-request-id"]
    assert raw.headers["x-aiapp-trace-id"]
    sent = stub.requests("chat")[-1]
    assert sent["model"] == "stub-model"
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


async def test_async_chat_with_the_openai_client(served: Served, stub: StubServer) -> None:
    stub.queue_replies("async hello")
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0) as aclient:
        reply = await aclient.chat.completions.create(
            model="stub", messages=[{"role": "user", "content": "hi"}], temperature=0, max_tokens=20
        )
    assert reply.choices[0].message.content == "async hello"
    sent = stub.requests("chat")[-1]
    assert sent["temperature"] == 0 and sent["max_tokens"] == 20


def test_streaming_chunks_and_the_usage_chunk(served: Served, stub: StubServer) -> None:
    stub.queue_replies("one two three four")
    stream = client(served).chat.completions.create(
        model="stub",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1  # really streamed
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


async def test_async_streaming_sends_the_trace_id_before_the_first_chunk(
    served: Served, stub: StubServer
) -> None:
    stub.queue_replies("streamed")
    aclient = openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)
    async with (
        aclient,
        aclient.chat.completions.with_streaming_response.create(
            model="stub", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as response,
    ):
        trace_id = response.headers["x-aiapp-trace-id"]
        text = "".join([c.choices[0].delta.content or "" async for c in await response.parse() if c.choices])
    assert text == "streamed" and trace_id


def test_tool_calls_plain_and_streamed(served: Served, stub: StubServer) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    stub.queue_replies(call, call)
    messages: Any = [{"role": "user", "content": "weather in Paris?"}]
    reply = client(served).chat.completions.create(
        model="stub", messages=messages, tools=tools, tool_choice="auto"
    )
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert calls is not None and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    sent = stub.requests("chat")[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["tool_choice"] == "auto"

    streamed = list(
        client(served).chat.completions.create(model="stub", messages=messages, tools=tools, stream=True)
    )
    deltas = [tc for c in streamed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function is not None and deltas[0].function.name == "get_weather"

    # the tool result goes back as a tool message, the assistant turn with its tool_calls
    stub.queue_replies("It is sunny.")
    follow: Any = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    final = client(served).chat.completions.create(model="stub", messages=follow, tools=tools)
    assert final.choices[0].message.content == "It is sunny."
    sent = stub.requests("chat")[-1]
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert sent["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


def test_response_format_reaches_the_provider(served: Served, stub: StubServer) -> None:
    stub.queue_replies('{"ok": true}', '{"ok": true}')
    c = client(served)
    reply = c.chat.completions.create(
        model="stub", messages=[{"role": "user", "content": "json"}], response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content or "") == {"ok": True}
    assert stub.requests("chat")[-1]["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    c.chat.completions.create(
        model="stub",
        messages=[{"role": "user", "content": "json"}],
        response_format={"type": "json_schema", "json_schema": {"name": "Out", "schema": schema}},
    )
    sent = stub.requests("chat")[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema


def test_request_id_is_echoed(served: Served, stub: StubServer) -> None:
    stub.queue_replies("hi")
    raw = client(served).chat.completions.with_raw_response.create(
        model="stub",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": "req-abc.123"},
    )
    assert raw.headers["x-request-id"] == "req-abc.123"
    assert (
        httpx.get(served.url + "/health", headers={"x-request-id": "not a sane id!"}).headers["x-request-id"]
        != "not a sane id!"
    )


# -- embeddings, models, operations --------------------------------------------------------------


def test_embeddings_base64_and_float(served: Served, stub: StubServer) -> None:
    c = client(served)
    default = c.embeddings.create(model="vllm/stub-embed", input=["alpha", "beta"])  # the client asks base64
    assert len(default.data) == 2 and len(default.data[0].embedding) > 0
    floats = c.embeddings.create(model="vllm/stub-embed", input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(default.data[0].embedding, abs=1e-6)
    with pytest.raises(openai.NotFoundError):
        c.embeddings.create(model="nope/embedder", input="x")


def test_local_minilm_embeddings(served: Served, stub: StubServer) -> None:
    pytest.importorskip("onnxruntime")
    reply = client(served).embeddings.create(model="local/all-MiniLM-L6-v2", input=["rotate a key"])
    assert len(reply.data[0].embedding) == 384


def test_models_lists_the_routes(served: Served, gateway: Gateway) -> None:
    models = client(served).models.list()
    assert sorted(m.id for m in models.data) == gateway.route_names()


def test_health_ready_and_metrics(served: Served, stub: StubServer) -> None:
    assert httpx.get(served.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(served.url + "/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    stub.queue_replies("counted")
    client(served).chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
    metrics = httpx.get(served.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'aiapp_requests_total{endpoint="chat",route="stub",status="200"}' in text
    assert 'aiapp_request_duration_seconds_bucket{endpoint="chat",le="+Inf"}' in text
    assert 'aiapp_tokens_total{route="stub",kind="output"}' in text
    assert 'aiapp_breaker_state{deployment="openai/stub-model@' in text
    assert "aiapp_streams_in_flight 0" in text


# -- bad input, upstream failures --------------------------------------------------------------


def test_malformed_json_is_a_400(served: Served, stub: StubServer) -> None:
    error = assert_error_shape(post(served, "/v1/chat/completions", b'{"model": "stub", "messages": ['), 400)
    assert "not valid JSON" in error["message"]
    assert_error_shape(post(served, "/v1/chat/completions", b"[1, 2]"), 400)
    good_request(served, stub)


def test_unknown_model_is_a_404(served: Served, stub: StubServer) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client(served).chat.completions.create(
            model="no-such-route", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.code == "model_not_found"
    assert "no-such-route" in str(raised.value)
    assert_error_shape(
        post(
            served,
            "/v1/chat/completions",
            {"model": "nosuch/x", "messages": [{"role": "user", "content": "a"}]},
        ),
        404,
    )
    good_request(served, stub)


def test_oversized_body_is_a_413(served: Served, stub: StubServer) -> None:
    big = {"model": "stub", "messages": [{"role": "user", "content": "x" * 200_000}]}
    error = assert_error_shape(post(served, "/v1/chat/completions", big), 413)
    assert "100000 bytes" in error["message"]
    with pytest.raises(openai.APIStatusError) as raised:
        client(served).chat.completions.create(model="stub", messages=big["messages"])  # type: ignore[arg-type]
    assert raised.value.status_code == 413
    good_request(served, stub)


def test_messages_of_the_wrong_shape_name_the_field(served: Served, stub: StubServer) -> None:
    def bad(messages: Any, **extra: Any) -> dict[str, Any]:
        return assert_error_shape(
            post(served, "/v1/chat/completions", {"model": "stub", "messages": messages, **extra}), 400
        )

    assert bad([{"role": "wizard", "content": "hi"}])["param"] == "messages[0].role"
    assert bad([{"role": "user", "content": "hi"}, {"content": "no role"}])["param"] == "messages[1].role"
    assert bad([{"role": "tool", "content": "x"}])["param"] == "messages[0].tool_call_id"
    assert bad([])["param"] == "messages"
    assert bad("hello")["param"] == "messages"
    assert (
        bad([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])["param"]
        == "messages[0].content[0].type"
    )
    assert bad([{"role": "user", "content": "hi"}], temperature="hot")["param"] == "temperature"
    assert bad([{"role": "user", "content": "hi"}], frobnicate=1)["param"] == "frobnicate"
    assert "messages[0].role" in bad([{"role": 3}])["message"]
    good_request(served, stub)


def test_upstream_failures_map_to_gateway_statuses(served: Served, stub: StubServer) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    stub.inject("500", model="flaky-model")
    with pytest.raises(openai.APIStatusError) as raised:
        client(served).chat.completions.create(model="flaky", messages=messages)
    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-aiapp-trace-id"]
    stub.inject("timeout", model="slow-model", seconds=3)
    with pytest.raises(openai.APIStatusError) as raised:
        client(served).chat.completions.create(model="slow", messages=messages)
    assert raised.value.status_code == 504
    good_request(served, stub)


def test_budget_and_rate_limits(served: Served, stub: StubServer) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.APIStatusError) as raised:
        client(served).chat.completions.create(model="tight", messages=messages, max_tokens=100)
    assert raised.value.status_code == 402
    assert "budget" in str(raised.value)
    client(served).chat.completions.create(model="limited", messages=messages)
    with pytest.raises(openai.RateLimitError) as limited:
        client(served).chat.completions.create(model="limited", messages=messages)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    good_request(served, stub)


def test_a_stream_error_before_the_first_chunk_gets_its_status(served: Served, stub: StubServer) -> None:
    stub.inject("500", model="flaky-model")
    with pytest.raises(openai.APIStatusError) as raised:
        list(
            client(served).chat.completions.create(
                model="flaky", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert raised.value.status_code == 502
    good_request(served, stub)


def _metric(served: Served, name: str) -> int:
    for line in httpx.get(served.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError(f"no {name} metric")


def _streams_in_flight(served: Served) -> int:
    return _metric(served, "aiapp_streams_in_flight")


def test_a_dropped_stream_cancels_the_upstream_call(
    served: Served, stub: StubServer, gateway: Gateway
) -> None:
    stub.queue_replies("first part and the rest")
    stub.inject("hold", endpoint="chat", seconds=30)
    body = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    try:
        with (
            httpx.Client(timeout=10) as http,
            http.stream("POST", served.url + "/v1/chat/completions", json=body) as response,
        ):
            assert response.status_code == 200
            trace_id = response.headers["x-aiapp-trace-id"]
            lines = response.iter_lines()  # kept: a dropped iterator closes the response
            first = next(lines)
            assert first.startswith("data: ")
            assert stub.stats()["holding"] == 1 and _streams_in_flight(served) == 1
        # the client hung up while the upstream still held the stream open
        deadline = time.monotonic() + 10
        while _streams_in_flight(served) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _streams_in_flight(served) == 0
        store = gateway.tracer.store
        assert store is not None
        store.flush()
        spans = store.trace(trace_id)
        server_span = next(s for s in spans if s.kind == "server")
        assert server_span.status == "error" and server_span.attributes.get("cancelled") is True
        assert server_span.attributes["http_status"] == 499 and "CancelledError" in (server_span.error or "")
        assert _metric(served, "aiapp_client_disconnects_total") >= 1
    finally:
        stub.release()
    good_request(served, stub)
