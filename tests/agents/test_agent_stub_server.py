"""The agent over a real provider path: the OpenAI-compatible client against the local stub server."""

from __future__ import annotations

import json

from agent_helpers import KeywordRetriever

from aiapp.agents import Agent, ApprovalRequest, tool
from aiapp.agents.tools import calculator, search_tool
from aiapp.config import Deployment, Route, Settings
from aiapp.gateway import Gateway
from aiapp.testing import StubServer
from aiapp.types import ToolCall


def stub_gateway(stub: StubServer) -> Gateway:
    route = Route(deployments=[Deployment(model="vllm/stub-model", api_base=stub.base_url, timeout_s=60)])
    return Gateway(Settings(routes={"stub": route}, default_route="stub"))


def test_multi_step_search_and_calculator_over_http(stub: StubServer) -> None:
    stub.queue_replies(
        [ToolCall(id="call_1", name="search", arguments=json.dumps({"query": "7B model RAM"}))],
        [ToolCall(id="call_2", name="calculator", arguments=json.dumps({"expression": "3 * 8"}))],
        "Three 7B models need about 24 GB of RAM.",
    )
    gw = stub_gateway(stub)
    agent = Agent(gateway=gw, tools=[search_tool(KeywordRetriever()), calculator])
    assert agent.uses_native_tools()
    run = agent.run("How much RAM do three 7B models need?")
    assert run.ok and run.output == "Three 7B models need about 24 GB of RAM."
    assert [c.result for c in run.tool_calls][1] == "24"
    requests = stub.requests("chat")
    assert len(requests) == 3
    assert {t["function"]["name"] for t in requests[0]["tools"]} == {"search", "calculator"}
    last = requests[-1]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert last[-1] == {"role": "tool", "content": "24", "name": "calculator", "tool_call_id": "call_2"}
    kinds = [s.kind for s in gw.tracer.store.trace(run.trace_id)]  # type: ignore[union-attr]
    assert kinds == ["agent", "llm", "tool", "llm", "tool", "llm"]


def test_malformed_call_corrected_over_http(stub: StubServer) -> None:
    stub.queue_replies(
        [ToolCall(id="call_1", name="calculator", arguments='{"expression": 2')],
        [ToolCall(id="call_2", name="calculator", arguments='{"expression": "2 ** 5"}')],
        "32",
    )
    run = Agent(gateway=stub_gateway(stub), tools=[calculator]).run("2^5?")
    assert run.ok and run.output == "32"
    assert [c.status for c in run.tool_calls] == ["invalid_arguments", "ok"]
    second = stub.requests("chat")[1]["messages"][-1]
    assert second["role"] == "tool" and "not valid JSON" in second["content"]


def test_denied_approval_and_refusal_over_http(stub: StubServer) -> None:
    @tool(requires_approval=True)
    def restart_service(name: str) -> str:
        """Restart a system service.

        Args:
            name: The service.
        """
        return f"restarted {name}"

    @tool
    def wipe_disk(device: str) -> str:
        """Erase a disk.

        Args:
            device: The device path.
        """
        return "wiped"

    stub.queue_replies(
        [
            ToolCall(id="call_1", name="restart_service", arguments='{"name": "ollama"}'),
            ToolCall(id="call_2", name="wipe_disk", arguments='{"device": "/dev/sda"}'),
        ],
        "I could not do either.",
    )
    seen: list[ApprovalRequest] = []

    def deny(request: ApprovalRequest) -> bool:
        seen.append(request)
        return False

    agent = Agent(
        gateway=stub_gateway(stub),
        tools=[restart_service, wipe_disk],
        allow=["restart_service"],
        approval=deny,
    )
    run = agent.run("restart ollama and wipe the disk")
    assert [c.status for c in run.tool_calls] == ["denied", "refused"]
    assert [r.tool for r in seen] == ["restart_service"]  # refused calls never reach the approver
    sent = [m for m in stub.requests("chat")[-1]["messages"] if m["role"] == "tool"]
    assert "not approved" in sent[0]["content"] and "permission denied" in sent[1]["content"]


def test_step_limit_over_http(stub: StubServer) -> None:
    from aiapp.agents import AgentLimits

    stub.queue_replies(
        *[[ToolCall(id=f"c{i}", name="calculator", arguments='{"expression": "1"}')] for i in range(5)]
    )
    run = Agent(gateway=stub_gateway(stub), tools=[calculator], limits=AgentLimits(max_steps=2)).run("count")
    assert run.stop_reason == "max_steps" and len(stub.requests("chat")) == 2


def test_repeated_sync_runs_share_one_gateway(stub: StubServer) -> None:
    """Sync runs must not bind the provider's async client to a throwaway event loop."""
    gw = stub_gateway(stub)
    agent = Agent(gateway=gw, tools=[calculator])
    for expected in ("two", "still two"):
        stub.queue_replies([ToolCall(id="c", name="calculator", arguments='{"expression": "1+1"}')], expected)
        run = agent.run("1+1?")
        assert run.output == expected
        assert [s.kind for s in gw.tracer.store.trace(run.trace_id)] == ["agent", "llm", "tool", "llm"]  # type: ignore[union-attr]
    stub.queue_replies("streamed")
    stream = agent.stream("again")
    assert [s.final for s in stream] == [True] and stream.run is not None and stream.run.output == "streamed"
