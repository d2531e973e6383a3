"""Two test aids: a model that exercises every tool, and a switch that keeps tests off real providers."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from aiapp.agents import Agent, tool
from aiapp.config import Deployment, Route, Settings
from aiapp.errors import ProviderCallBlockedError
from aiapp.gateway import Gateway
from aiapp.gateway.providers.openai_compat import OpenAICompatibleModel
from aiapp.testing import StubServer, ToolCallingModel, arguments_for, block_provider_calls
from aiapp.types import Message, ToolSpec


class Window(BaseModel):
    start: int = Field(ge=3)
    unit: Literal["days", "weeks"]


@tool(read_only=True)
def lookup_order(order_id: str, window: Window, tags: list[str], urgent: bool = False) -> str:
    """Look up an order."""
    return f"order {order_id}: {window.start} {window.unit}, tags={tags}, urgent={urgent}"


@tool(read_only=True)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_arguments_follow_the_schema() -> None:
    spec = ToolSpec(
        name="t",
        parameters={
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 5},
                "s": {"type": "string", "minLength": 3},
                "e": {"enum": ["x", "y"]},
                "o": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0}]},
            },
            "required": ["n", "s", "e", "o"],
        },
    )
    assert arguments_for(spec) == {"n": 5, "s": "aaa", "e": "x", "o": 1.0}


def test_an_agent_runs_every_tool_with_valid_arguments() -> None:
    model = ToolCallingModel()
    agent = Agent(gateway=Gateway(Settings(), models={"m": model}), model="m", tools=[lookup_order, add])
    run = agent.run("exercise the tools")
    assert {c.name for c in model.calls} == {"lookup_order", "add"}
    results = json.loads(run.output or "")
    assert results["add"] == "2"
    assert results["lookup_order"].startswith("order a: 3 days")  # the nested model validated


def test_blocked_calls_raise_before_anything_is_sent() -> None:
    remote = OpenAICompatibleModel("openai/gpt-4o-mini", api_key="sk-test")
    with block_provider_calls(), pytest.raises(ProviderCallBlockedError, match="blocked"):
        remote.complete([Message.user("hi")])


def test_loopback_stays_allowed_unless_asked(stub: StubServer) -> None:
    local = OpenAICompatibleModel("vllm/stub-model", api_base=stub.base_url)
    with block_provider_calls():
        assert local.complete([Message.user("hi")]).text == "stub reply: hi"
    before = stub.stats()["requests"]
    with block_provider_calls(allow_loopback=False), pytest.raises(ProviderCallBlockedError):
        local.complete([Message.user("hi")])
    assert stub.stats()["requests"] == before


def test_a_blocked_call_ends_the_route_without_failover_noise(stub: StubServer) -> None:
    settings = Settings(routes={"r": Route(deployments=[Deployment(model="openai/gpt-4o-mini")])})
    with block_provider_calls(), Gateway(settings) as gw, pytest.raises(ProviderCallBlockedError):
        import os

        os.environ["OPENAI_API_KEY"] = "sk-test"
        try:
            gw.complete("hi", model="r")
        finally:
            del os.environ["OPENAI_API_KEY"]
