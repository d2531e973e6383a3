"""The async core seen from outside: real streaming from every provider, Jupyter-style sync calls,
immutable replies and one connection pool across sync calls."""

from __future__ import annotations

from collections.abc import Iterator

import pydantic
import pytest

from aiapp.config import Deployment, Route, Settings
from aiapp.gateway import Gateway, Model
from aiapp.gateway.providers.litellm import LiteLLMModel
from aiapp.gateway.providers.openai_compat import OpenAICompatibleModel
from aiapp.testing import FakeModel, StubServer
from aiapp.types import Completion, Message, StreamChunk


def _providers(stub: StubServer) -> dict[str, Model]:
    return {
        "openai_compat": OpenAICompatibleModel("vllm/stub-model", api_base=stub.base_url, timeout_s=15),
        "litellm": LiteLLMModel(
            "openai/stub-model", api_base=stub.base_url, api_key_env="STUB_KEY", timeout_s=15
        ),
    }


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-stub")


def _first_then_rest(stub: StubServer, chunks: Iterator[StreamChunk]) -> tuple[int, str]:
    """Take one chunk while the stub still holds the reply's end; return (holding then, all text)."""
    first = next(chunks)
    holding = stub.stats()["holding"]
    stub.release()
    return holding, first.delta + "".join(c.delta for c in chunks)


@pytest.mark.parametrize("provider", ["openai_compat", "litellm"])
def test_sync_streams_yield_the_first_chunk_before_the_last_arrives(stub: StubServer, provider: str) -> None:
    stub.inject("hold", endpoint="chat")
    model = _providers(stub)[provider]
    holding, text = _first_then_rest(stub, iter(model.stream([Message.user("one two three four")])))
    assert holding == 1  # the server had not sent the end yet
    assert text == "stub reply: one two three four"


@pytest.mark.parametrize("provider", ["openai_compat", "litellm"])
async def test_async_streams_yield_the_first_chunk_before_the_last_arrives(
    stub: StubServer, provider: str
) -> None:
    stub.inject("hold", endpoint="chat")
    stream = _providers(stub)[provider].astream([Message.user("alpha beta gamma")])
    first = await anext(stream)
    assert stub.stats()["holding"] == 1
    stub.release()
    rest = [c.delta async for c in stream]
    assert first.delta + "".join(rest) == "stub reply: alpha beta gamma"


def test_gateway_streams_through_its_layers_before_the_reply_ends(stub: StubServer) -> None:
    settings = Settings(
        routes={"s": Route(deployments=[Deployment(model="vllm/stub-model", api_base=stub.base_url)])}
    )
    stub.inject("hold", endpoint="chat")
    with Gateway(settings) as gw:
        holding, text = _first_then_rest(stub, iter(gw.stream("streamed through the gateway", model="s")))
    assert holding == 1 and text == "stub reply: streamed through the gateway"


async def test_the_sync_api_works_inside_a_running_loop(stub: StubServer) -> None:
    # What a Jupyter cell does: its loop is running, and the user calls the sync API.
    settings = Settings(
        routes={"s": Route(deployments=[Deployment(model="vllm/stub-model", api_base=stub.base_url)])}
    )
    with Gateway(settings) as gw:
        assert gw.complete("from a notebook", model="s").text == "stub reply: from a notebook"
        assert "".join(c.delta for c in gw.stream("and streaming", model="s")) == "stub reply: and streaming"
        assert (await gw.acomplete("then async", model="s")).text == "stub reply: then async"


def test_sync_calls_reuse_one_connection_pool(stub: StubServer) -> None:
    model = OpenAICompatibleModel("vllm/stub-model", api_base=stub.base_url, timeout_s=5)
    for i in range(3):
        model.complete([Message.user(f"call {i}")])
    client = model._client
    assert client is not None and len(client._sessions) == 1  # one loop, one pool, three calls
    model.close()


def test_completions_are_immutable_and_layers_return_copies() -> None:
    reply = Completion(text="hi")
    with pytest.raises(pydantic.ValidationError):
        reply.text = "changed"  # type: ignore[misc]
    with Gateway(Settings(), models={"m": FakeModel([reply])}) as gw:
        out = gw.complete("x", model="m")
    assert out.trace_id is not None and reply.trace_id is None  # the gateway stamped a copy


def test_fake_model_returns_a_fresh_value_per_call() -> None:
    shared = Completion(text="same", model="m")
    fake = FakeModel([shared, shared])
    first, second = fake.complete([Message.user("a")]), fake.complete([Message.user("b")])
    assert first == second and first is not second and first is not shared


def test_a_stream_the_caller_abandons_is_still_traced() -> None:
    with Gateway(Settings(), models={"m": FakeModel(["one two three four five"])}) as gw:
        stream = gw.stream("x", model="m")
        next(iter(stream))
        stream.close()  # type: ignore[attr-defined]
        gw.tracer.store.flush()  # type: ignore[union-attr]
        [span] = gw.tracer.store.recent(limit=1, kind="llm")  # type: ignore[union-attr]
    assert span.status == "error" and "cancelled by the caller" in (span.error or "")
