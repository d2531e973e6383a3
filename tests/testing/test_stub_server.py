"""StubServer: a local OpenAI-compatible server, exercised with the real ``openai`` client and httpx."""

from __future__ import annotations

import base64
import http.client
import json
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from aiapp.testing import StubServer, embed_text
from aiapp.types import Completion, ToolCall

MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
]
DEFAULT_TEXT = "stub reply: What is the capital of France?"


@pytest.fixture(scope="module")
def server() -> Iterator[StubServer]:
    with StubServer() as stub:
        yield stub


@pytest.fixture
def stub(server: StubServer) -> StubServer:
    server.reset()
    return server


@pytest.fixture
def client(stub: StubServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stub.base_url, api_key="x", max_retries=0) as c:
        yield c


def chat(client: openai.OpenAI, model: str = "gpt-test", **kwargs: Any) -> Any:
    return client.chat.completions.create(model=model, messages=MESSAGES, **kwargs)


# -- normal behaviour ---------------------------------------------------------------------------


def test_chat_default_reply_echoes_model_and_counts_usage(stub: StubServer, client: openai.OpenAI) -> None:
    response = chat(client, model="my-model")
    assert response.model == "my-model"
    assert response.choices[0].message.content == DEFAULT_TEXT
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (9, 8)
    assert stub.base_url == f"http://127.0.0.1:{stub.port}/v1"


def test_scripted_replies_are_used_in_order_then_the_default(stub: StubServer, client: openai.OpenAI) -> None:
    stub.queue_replies("first", {"content": "second"}, Completion(text="third", finish_reason="length"))
    replies = [chat(client).choices[0] for _ in range(4)]
    assert [c.message.content for c in replies] == ["first", "second", "third", DEFAULT_TEXT]
    assert replies[2].finish_reason == "length"


def test_streaming_yields_one_chunk_per_word_then_usage(stub: StubServer, client: openai.OpenAI) -> None:
    stub.queue_replies("Paris is the capital of France")
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas == ["Paris ", "is ", "the ", "capital ", "of ", "France"]
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_streaming_without_include_usage_sends_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(chat(client, stream=True))
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == DEFAULT_TEXT


def test_tool_calls_non_streaming(stub: StubServer, client: openai.OpenAI) -> None:
    stub.queue_replies(
        [
            ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
            ToolCall(id="call_2", name="now"),
        ]
    )
    choice = chat(client).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}'),
        ("call_2", "now", "{}"),
    ]


def test_tool_calls_stream_like_openai(stub: StubServer, client: openai.OpenAI) -> None:
    arguments = json.dumps({"city": "Paris", "unit": "celsius", "days": 3})
    stub.queue_replies({"tool_calls": [{"id": "call_9", "name": "forecast", "arguments": arguments}]})
    chunks = list(chat(client, stream=True))
    pieces = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    first = pieces[0]
    assert (first.index, first.id, first.function.name, first.function.arguments) == (
        0,
        "call_9",
        "forecast",
        "",
    )
    assert len(pieces) > 2  # the arguments arrive in several fragments
    assert all(p.id is None for p in pieces[1:])
    assert "".join(p.function.arguments or "" for p in pieces) == arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_json_response_format_returns_a_json_object(client: openai.OpenAI) -> None:
    for fmt in ({"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}):
        content = chat(client, response_format=fmt).choices[0].message.content
        assert json.loads(content) == {"answer": DEFAULT_TEXT}


def test_embeddings_are_deterministic_normalised_and_similarity_preserving(client: openai.OpenAI) -> None:
    texts = ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew sharply"]
    response = client.embeddings.create(model="embed-test", input=texts)  # the client asks for base64
    vectors = [d.embedding for d in response.data]
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] == pytest.approx(embed_text(texts[0]), abs=1e-6)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert response.usage.prompt_tokens == 6 + 6 + 4
    single = client.embeddings.create(model="embed-test", input="the cat sat on the mat")
    assert single.data[0].embedding == vectors[0]


def test_embeddings_as_floats_and_custom_dimensions_over_httpx(stub: StubServer) -> None:
    body = {"model": "e", "input": ["hello world"], "dimensions": 16, "encoding_format": "float"}
    data = httpx.post(stub.base_url + "/embeddings", json=body).json()["data"]
    assert data[0]["embedding"] == pytest.approx(embed_text("hello world", 16))
    raw = httpx.post(stub.url + "/embeddings", json={**body, "encoding_format": "base64"}).json()
    decoded = struct.unpack("<16f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(data[0]["embedding"], abs=1e-6)


def test_models_health_and_paths_without_v1(stub: StubServer, client: openai.OpenAI) -> None:
    chat(client, model="seen-model")
    assert {m.id for m in client.models.list()} >= {"stub-model", "seen-model"}
    assert httpx.get(stub.url + "/health").json() == {"status": "ok"}
    reply = httpx.post(stub.url + "/chat/completions", json={"model": "m", "messages": MESSAGES}).json()
    assert reply["choices"][0]["message"]["content"] == DEFAULT_TEXT
    missing = httpx.get(stub.url + "/v1/nope")
    assert missing.status_code == 404 and "error" in missing.json()


def test_request_log_counters_and_reset(stub: StubServer, client: openai.OpenAI) -> None:
    chat(client, temperature=0.2)
    client.embeddings.create(model="e", input="x")
    assert [b["model"] for b in stub.requests()] == ["gpt-test", "e"]
    assert stub.requests("chat")[0]["temperature"] == 0.2
    assert stub.requests("embeddings")[0]["input"] == "x"
    assert stub.stats()["requests"] == 2
    stub.reset()
    assert stub.requests() == []
    assert stub.stats() == {
        "requests": 0,
        "faults_injected": 0,
        "pending_replies": 0,
        "pending_faults": 0,
        "holding": 0,
    }


def test_connections_are_kept_alive(stub: StubServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=5)
    body = json.dumps({"model": "m", "messages": MESSAGES})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    assert conn.getresponse().read()
    sock = conn.sock
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    assert json.loads(conn.getresponse().read())["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert conn.sock is sock is not None
    conn.close()


def test_latency_is_added_to_model_requests(stub: StubServer, client: openai.OpenAI) -> None:
    stub.set_latency(150)
    start = time.perf_counter()
    chat(client)
    assert time.perf_counter() - start >= 0.15
    stub.set_latency(0)


# -- faults -------------------------------------------------------------------------------------


def test_429_raises_rate_limit_error_with_retry_after(stub: StubServer, client: openai.OpenAI) -> None:
    stub.inject("429", retry_after=3)
    with pytest.raises(openai.RateLimitError) as info:
        chat(client)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "3"
    assert stub.stats()["faults_injected"] == 1


def test_429_default_retry_after_and_client_retries_honour_it(stub: StubServer) -> None:
    stub.inject("429", count=1, retry_after=0.05)
    with openai.OpenAI(base_url=stub.base_url, api_key="x", max_retries=1) as retrying:
        assert chat(retrying).choices[0].message.content == DEFAULT_TEXT
    assert stub.stats() == {
        "requests": 2,
        "faults_injected": 1,
        "pending_replies": 0,
        "pending_faults": 0,
        "holding": 0,
    }
    stub.inject("429")
    response = httpx.post(stub.base_url + "/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_5xx_and_arbitrary_status_codes(stub: StubServer, client: openai.OpenAI) -> None:
    stub.inject("500")
    stub.inject("503")
    stub.inject("status", status=502, message="bad upstream")
    stub.inject("status", status=401)
    stub.inject("status", status=400)
    with pytest.raises(openai.InternalServerError) as info:
        chat(client)
    assert info.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as info:
        chat(client)
    assert info.value.status_code == 503
    with pytest.raises(openai.InternalServerError, match="bad upstream"):
        chat(client)
    with pytest.raises(openai.AuthenticationError):
        chat(client)
    with pytest.raises(openai.BadRequestError):
        chat(client)
    assert chat(client).choices[0].message.content == DEFAULT_TEXT  # faults used up


def test_timeout_makes_the_client_time_out(stub: StubServer, client: openai.OpenAI) -> None:
    stub.inject("timeout", seconds=2)
    start = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        chat(client, timeout=0.3)
    assert time.perf_counter() - start < 1.5
    assert chat(client, timeout=2).choices[0].message.content == DEFAULT_TEXT


def test_garbage_body_raises_json_decode_error(stub: StubServer, client: openai.OpenAI) -> None:
    # openai parses a 200 application/json body with response.json() and does not wrap the failure.
    stub.inject("garbage", count=2)
    with pytest.raises(json.JSONDecodeError):
        chat(client)
    with pytest.raises(json.JSONDecodeError):  # streamed: a data: line that is not JSON
        list(chat(client, stream=True))


def test_cut_stream_raises_while_iterating(stub: StubServer, client: openai.OpenAI) -> None:
    stub.inject("cut", after=2)
    stream = chat(client, stream=True)
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        for chunk in stream:  # the openai client lets the httpx error through, unwrapped
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["stub ", "reply: "]


def test_cut_non_streaming_body_is_a_connection_error(stub: StubServer, client: openai.OpenAI) -> None:
    stub.inject("cut")
    with pytest.raises(openai.APIConnectionError) as info:
        chat(client)
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)


def test_model_filter_and_count(stub: StubServer, client: openai.OpenAI) -> None:
    stub.inject("500", count=2, model="flaky")
    assert chat(client, model="healthy").choices[0].message.content == DEFAULT_TEXT
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(client, model="flaky")
    assert chat(client, model="flaky").choices[0].message.content == DEFAULT_TEXT
    assert stub.stats()["faults_injected"] == 2


def test_faults_apply_in_order_and_can_target_an_endpoint(stub: StubServer, client: openai.OpenAI) -> None:
    stub.inject("status", status=503, endpoint="embeddings")
    stub.inject("429")
    with pytest.raises(openai.RateLimitError):
        chat(client)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="e", input="x")
    assert stub.stats()["pending_faults"] == 0


def test_bad_control_requests_are_rejected(stub: StubServer) -> None:
    with pytest.raises(ValueError, match="unknown fault mode 'explode'"):
        stub.inject("explode")
    with pytest.raises(ValueError, match="needs an integer 'status'"):
        stub.inject("status")
    with pytest.raises(TypeError):
        stub.queue_replies(42)


# -- lifecycle ----------------------------------------------------------------------------------


def test_port_before_start_is_an_error() -> None:
    stub = StubServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = stub.port
    stub.stop()  # harmless


def test_subprocess_mode_serves_and_is_scripted_over_http() -> None:
    stub = StubServer.spawn(latency_ms=1)
    try:
        assert stub._proc is not None and stub._proc.poll() is None
        stub.queue_replies("from the child process")
        with openai.OpenAI(base_url=stub.base_url, api_key="x", max_retries=0) as c:
            assert chat(c).choices[0].message.content == "from the child process"
        assert stub.stats()["requests"] == 1
        proc = stub._proc
    finally:
        stub.stop()
    assert proc.poll() is not None
