"""The agent loop driven by scripted FakeModel tool calls: steps, errors, limits, safety, traces."""

from __future__ import annotations

import asyncio
import json

import pytest
from agent_helpers import KeywordRetriever, gateway

from aiapp.agents import (
    Agent,
    AgentLimits,
    AgentStep,
    ApprovalDecision,
    ApprovalRequest,
    Secret,
    ToolContext,
    approve_all,
    tool,
)
from aiapp.agents.tools import calculator, search_tool
from aiapp.errors import AgentLimitError, ProviderServerError
from aiapp.testing import FakeModel
from aiapp.types import Completion, ToolCall, Usage


def call(name: str, args: dict[str, object] | str, id: str = "c1") -> ToolCall:
    return ToolCall(id=id, name=name, arguments=args if isinstance(args, str) else json.dumps(args))


@tool
def send_email(to: str, body: str) -> str:
    """Send an email.

    Args:
        to: Recipient address.
        body: The message.
    """
    return f"sent to {to}"


def test_multi_step_task_searches_then_computes() -> None:
    retriever = KeywordRetriever()
    fake = FakeModel(
        [
            [call("search", {"query": "RAM 7B model"})],
            [call("calculator", {"expression": "3 * 8"}, id="c2")],
            "Three 7B models need about 24 GB of RAM [docs/gpu.md].",
        ]
    )
    gw = gateway(m=fake)
    agent = Agent(gateway=gw, model="m", tools=[search_tool(retriever), calculator])
    run = agent.run("How much RAM do three 7B models need?")

    assert run.ok and run.stop_reason == "final_answer"
    assert run.output == "Three 7B models need about 24 GB of RAM [docs/gpu.md]."
    assert run.steps_used == 3 and run.protocol == "native"
    assert [c.tool for c in run.tool_calls] == ["search", "calculator"]
    assert run.tool_calls[1].result == "24" and not run.tool_errors
    assert retriever.queries == ["RAM 7B model"]
    # the model was offered both tools, and read the search result before computing
    assert {t.name for t in fake.calls[0].options.tools} == {"search", "calculator"}
    tool_msg = fake.calls[1].messages[-1]
    assert tool_msg.role == "tool" and tool_msg.tool_call_id == "c1" and "[1] docs/gpu.md" in tool_msg.content
    assert run.usage.input_tokens == sum(s.usage.input_tokens for s in run.steps) > 0
    assert run.messages[-1].content == run.output


def test_every_step_is_a_span_under_the_agent_span() -> None:
    fake = FakeModel([[call("calculator", {"expression": "2+2"})], "4"])
    gw = gateway(m=fake)
    run = Agent(gateway=gw, model="m", tools=[calculator], name="mathbot").run("2+2?")
    spans = gw.tracer.store.trace(run.trace_id)  # type: ignore[union-attr]
    root = next(s for s in spans if s.kind == "agent")
    assert root.name == "mathbot" and root.parent_id is None and root.status == "ok"
    assert root.input == "2+2?" and root.output == "4"
    assert root.attributes["stop_reason"] == "final_answer" and root.attributes["steps"] == 2
    children = [s for s in spans if s.parent_id == root.span_id]
    assert [s.kind for s in children] == ["llm", "tool", "llm"]
    tool_span = children[1]
    assert tool_span.name == "calculator" and json.loads(tool_span.input) == {"expression": "2+2"}
    assert tool_span.output == "4" and tool_span.attributes["status"] == "ok"
    assert root.input_tokens == run.usage.input_tokens


def test_malformed_tool_call_goes_back_and_the_model_corrects_it() -> None:
    fake = FakeModel(
        [
            [call("calculator", '{"expression": "6*7"')],  # broken JSON
            [call("calculator", {"expr": "6*7"}, id="c2")],  # wrong field name
            [call("calculator", {"expression": "6*7"}, id="c3")],
            "42",
        ]
    )
    run = Agent(gateway=gateway(m=fake), model="m", tools=[calculator]).run("6 times 7?")
    assert run.ok and run.output == "42"
    assert [c.status for c in run.tool_calls] == ["invalid_arguments", "invalid_arguments", "ok"]
    first_error = fake.calls[1].messages[-1]
    assert first_error.role == "tool" and "not valid JSON" in first_error.content
    second_error = fake.calls[2].messages[-1].content
    assert "expression: Field required" in second_error and "expr: Extra inputs" in second_error
    assert len(run.tool_errors) == 2


def test_invalid_calls_are_bounded() -> None:
    fake = FakeModel(default=[call("calculator", {"expr": "1"})])
    run = Agent(
        gateway=gateway(m=fake), model="m", tools=[calculator], limits=AgentLimits(max_retries=1)
    ).run("1?")
    assert run.stop_reason == "invalid_tool_calls" and run.output is None
    assert "2 invalid calls of 'calculator' in a row (max_retries=1)" in run.detail
    assert fake.call_count == 2
    with pytest.raises(AgentLimitError) as err:
        run.raise_for_stop()
    assert err.value.stop_reason == "invalid_tool_calls" and err.value.run is run


def test_unknown_tool_is_reported_to_the_model() -> None:
    fake = FakeModel([[call("weather", {})], "sorry"])
    run = Agent(gateway=gateway(m=fake), model="m", tools=[calculator]).run("weather?")
    assert run.tool_calls[0].status == "unknown_tool"
    assert "no tool named 'weather'; the tools are: calculator" in fake.last_messages[-1].content


def test_step_limit_ends_the_run_with_its_reason() -> None:
    fake = FakeModel(default=[call("calculator", {"expression": "1+1"})])
    agent = Agent(gateway=gateway(m=fake), model="m", tools=[calculator], limits=AgentLimits(max_steps=3))
    run = agent.run("loop forever")
    assert run.stop_reason == "max_steps" and run.output is None and not run.ok
    assert run.detail == "reached max_steps=3 without a final answer"
    assert run.steps_used == 3 and fake.call_count == 3
    # the last step's calls do not run: no model call could read their results
    assert [c.status for c in run.tool_calls] == ["ok", "ok", "not_run"]


def test_per_tool_call_cap() -> None:
    fake = FakeModel(default=[call("calculator", {"expression": "1+1"})])
    limits = AgentLimits(max_steps=10, max_tool_calls_per_tool=2)
    run = Agent(gateway=gateway(m=fake), model="m", tools=[calculator], limits=limits).run("again")
    assert run.stop_reason == "max_tool_calls"
    assert "'calculator' reached max_tool_calls_per_tool=2" in run.detail
    assert [c.status for c in run.tool_calls] == ["ok", "ok", "not_run"]


def test_token_limit_stops_before_running_more_tools() -> None:
    fake = FakeModel(default=[call("calculator", {"expression": "1+1"})])
    run = Agent(gateway=gateway(m=fake), model="m", tools=[calculator], limits=AgentLimits(max_tokens=5)).run(
        "count the words in this task please"
    )
    assert run.stop_reason == "max_tokens" and fake.call_count == 1
    assert run.tool_calls[0].status == "not_run"


def test_cost_limit_and_unknown_cost() -> None:
    priced = Completion(
        tool_calls=(call("calculator", {"expression": "1"}),), usage=Usage(input_tokens=10, cost_usd=0.02)
    )
    fake = FakeModel(default=priced)
    run = Agent(
        gateway=gateway(m=fake), model="m", tools=[calculator], limits=AgentLimits(max_cost_usd=0.05)
    ).run("spend")
    assert run.stop_reason == "max_cost" and fake.call_count == 3
    assert run.usage.cost_usd == pytest.approx(0.06)

    unknown = Completion(tool_calls=(call("calculator", {"expression": "1"}),), usage=Usage(cost_usd=None))
    run = Agent(
        gateway=gateway(m=FakeModel(default=unknown)),
        model="m",
        tools=[calculator],
        limits=AgentLimits(max_cost_usd=1.0),
    ).run("spend")
    assert run.stop_reason == "max_cost" and "unknown" in run.detail and run.usage.cost_usd is None


def test_wall_time_limit() -> None:
    never = asyncio.Event()

    @tool(read_only=True)
    async def wait_forever() -> str:
        """Wait for something that never happens."""
        await never.wait()
        return "done"

    fake = FakeModel(default=[call("wait_forever", {})])
    run = Agent(
        gateway=gateway(m=fake), model="m", tools=[wait_forever], limits=AgentLimits(max_wall_s=0.05)
    ).run("wait")
    assert run.stop_reason == "max_wall_time" and run.output is None
    assert run.tool_calls[0].status == "not_run"


def test_parallel_tool_calls_run_concurrently() -> None:
    arrived: list[str] = []
    both = asyncio.Event()

    @tool(read_only=True)
    async def fetch(item: str) -> str:
        """Fetch an item (each call waits until both calls have started)."""
        arrived.append(item)
        if len(arrived) == 2:
            both.set()
        await both.wait()  # deadlocks unless the two calls run at the same time
        return f"got {item}"

    fake = FakeModel(
        [[call("fetch", {"item": "a"}, id="a"), call("fetch", {"item": "b"}, id="b")], "got both"]
    )
    run = Agent(gateway=gateway(m=fake), model="m", tools=[fetch], limits=AgentLimits(max_wall_s=30)).run(
        "a and b"
    )
    assert run.ok and sorted(arrived) == ["a", "b"]
    assert [m.tool_call_id for m in fake.last_messages if m.role == "tool"] == ["a", "b"]


def test_side_effecting_tool_is_refused_without_permission() -> None:
    fake = FakeModel([[call("send_email", {"to": "a@example.com", "body": "hi"})], "I could not send it."])
    gw = gateway(m=fake)
    run = Agent(gateway=gw, model="m", tools=[send_email]).run("email a@example.com")
    record = run.tool_calls[0]
    assert (
        record.status == "refused" and "has side effects and this agent was not granted it" in record.result
    )
    assert fake.last_messages[-1].content == record.result
    assert run.ok  # the model was told and answered without it
    spans = gw.tracer.store.trace(run.trace_id)  # type: ignore[union-attr]
    refused = next(s for s in spans if s.kind == "tool")
    assert refused.status == "error" and refused.attributes["status"] == "refused"

    granted = FakeModel([[call("send_email", {"to": "a@example.com", "body": "hi"})], "Sent."])
    run = Agent(gateway=gateway(m=granted), model="m", tools=[send_email], allow=["send_email"]).run("email")
    assert run.tool_calls[0].status == "ok" and run.tool_calls[0].result == "sent to a@example.com"


@tool(read_only=True, requires_approval=True)
def delete_cache(path: str) -> str:
    """Delete a cache directory.

    Args:
        path: The directory.
    """
    return f"deleted {path}"


def test_denied_approval_is_told_to_the_model_and_traced() -> None:
    asked: list[ApprovalRequest] = []

    def reviewer(request: ApprovalRequest) -> ApprovalDecision:
        asked.append(request)
        return ApprovalDecision(False, "not on a Friday", by="ops")

    fake = FakeModel([[call("delete_cache", {"path": "/var/cache"})], "I was not allowed to."])
    gw = gateway(m=fake)
    run = Agent(gateway=gw, model="m", tools=[delete_cache], approval=reviewer).run("clean up", user="ana")
    assert asked[0].tool == "delete_cache" and asked[0].arguments == {"path": "/var/cache"}
    assert asked[0].user == "ana" and asked[0].trace_id == run.trace_id
    record = run.tool_calls[0]
    assert record.status == "denied" and record.approved is False
    assert "not approved (not on a Friday); do not retry it" in fake.last_messages[-1].content
    spans = gw.tracer.store.trace(run.trace_id)  # type: ignore[union-attr]
    approval = next(s for s in spans if s.kind == "approval")
    assert approval.output == "denied" and approval.attributes["by"] == "ops"
    assert approval.parent_id == next(s for s in spans if s.kind == "agent").span_id
    assert not any(s.kind == "tool" and s.status == "ok" for s in spans)


def test_approval_required_without_approver_is_denied_and_approved_calls_run() -> None:
    fake = FakeModel([[call("delete_cache", {"path": "/tmp/x"})], "ok"])
    run = Agent(gateway=gateway(m=fake), model="m", tools=[delete_cache]).run("clean")
    assert run.tool_calls[0].status == "denied"

    async def yes(request: ApprovalRequest) -> bool:
        return True

    for approver in (yes, approve_all, lambda r: True):
        fake = FakeModel([[call("delete_cache", {"path": "/tmp/x"})], "ok"])
        run = Agent(gateway=gateway(m=fake), model="m", tools=[delete_cache], approval=approver).run("clean")
        assert run.tool_calls[0].status == "ok" and run.tool_calls[0].approved is True


def test_secrets_reach_only_the_tool_and_never_the_trace() -> None:
    @tool(read_only=True)
    def whoami(api_key: Secret) -> str:
        """Ask the service who we are."""
        return f"authenticated with {api_key.get()} as bot"

    fake = FakeModel([[call("whoami", {})], "You are bot."])
    gw = gateway(m=fake)
    run = Agent(gateway=gw, model="m", tools=[whoami], secrets={"api_key": "sk-very-secret"}).run("who?")
    assert run.tool_calls[0].result == "authenticated with [secret] as bot"
    assert "api_key" not in json.dumps(fake.calls[0].options.tools[0].parameters)
    dumped = json.dumps([s.model_dump(mode="json") for s in gw.tracer.store.trace(run.trace_id)])  # type: ignore[union-attr]
    assert "sk-very-secret" not in dumped and "sk-very-secret" not in run.model_dump_json()

    other = FakeModel([[call("whoami", {})], "no key"])
    run = Agent(gateway=gateway(m=other), model="m", tools=[whoami]).run("who?")
    assert run.tool_calls[0].status == "error" and "was not given" in run.tool_calls[0].error  # type: ignore[operator]


def test_tool_exceptions_become_tool_errors() -> None:
    @tool(read_only=True)
    def flaky(n: int) -> int:
        """Fails."""
        raise RuntimeError(f"backend down ({n})")

    fake = FakeModel([[call("flaky", {"n": 1})], "It failed."])
    run = Agent(gateway=gateway(m=fake), model="m", tools=[flaky]).run("try")
    assert run.ok and run.tool_calls[0].status == "error"
    assert fake.last_messages[-1].content == "Error: RuntimeError: backend down (1)"


def test_provider_errors_propagate_and_are_traced() -> None:
    fake = FakeModel([ProviderServerError("boom", status=500)])
    gw = gateway(m=fake)
    with pytest.raises(ProviderServerError):
        Agent(gateway=gw, model="m", tools=[calculator]).run("x")
    [agent_span] = gw.tracer.store.recent(kind="agent")  # type: ignore[union-attr]
    assert agent_span.status == "error"


def test_stream_yields_steps_then_the_run() -> None:
    fake = FakeModel([[call("calculator", {"expression": "2*3"})], "6"])
    stream = Agent(gateway=gateway(m=fake), model="m", tools=[calculator]).stream("2*3?")
    steps = list(stream)
    assert [(s.index, s.final) for s in steps] == [(1, False), (2, True)]
    assert steps[0].tool_calls[0].result == "6"
    assert stream.run is not None and stream.run.output == "6"


async def test_arun_and_astream() -> None:
    fake = FakeModel([[call("calculator", {"expression": "2*3"})], "6", "7"])
    agent = Agent(gateway=gateway(m=fake), model="m", tools=[calculator])
    stream = agent.astream("2*3?")
    steps: list[AgentStep] = [step async for step in stream]
    assert len(steps) == 2 and stream.run is not None and stream.run.output == "6"
    run = await agent.arun("again")
    assert run.output == "7"
    # the sync API also works from inside a running loop
    fake.push("8")
    assert agent.run("once more").output == "8"


def test_success_hook_and_summary_for_eval_targets() -> None:
    fake = FakeModel([[call("calculator", {"expression": "40+2"})], "The answer is 42."])
    agent = Agent(gateway=gateway(m=fake), model="m", tools=[calculator])
    run = agent.run("40+2?", success=lambda r: "42" in (r.output or ""))
    assert run.success is True
    summary = run.summary()
    assert summary["stop_reason"] == "final_answer" and summary["steps_used"] == 2
    assert summary["tool_calls"] == 1 and summary["tool_errors"] == 0 and summary["trace_id"] == run.trace_id


def test_tool_context_carries_the_run() -> None:
    seen: list[ToolContext] = []

    @tool(read_only=True)
    def note(ctx: ToolContext) -> str:
        """Record the context."""
        seen.append(ctx)
        return "ok"

    fake = FakeModel([[call("note", {}, id="n1")], "done"])
    run = Agent(gateway=gateway(m=fake), model="m", tools=[note]).run("x", user="ana", session="s1")
    assert (seen[0].user, seen[0].session, seen[0].call_id, seen[0].step) == ("ana", "s1", "n1", 1)
    assert seen[0].trace_id == run.trace_id


def test_configuration_errors() -> None:
    from aiapp.errors import InputError

    with pytest.raises(InputError, match="allow= names tools"):
        Agent(gateway=gateway(), tools=[calculator], allow=["calculater"])
    with pytest.raises(InputError, match="two tools are named"):
        Agent(gateway=gateway(), tools=[calculator, calculator])
    with pytest.raises(InputError, match="must be read-only"):
        Agent(gateway=gateway(), tools=[send_email], prefetch=["send_email"])
    with pytest.raises(InputError, match="empty"):
        Agent(gateway=gateway(m=FakeModel()), model="m").run("  ")


def test_eval_fields_match_the_eval_output_shape() -> None:
    fake = FakeModel([[call("calculator", {"expression": "40+2"})], "42"])
    run = Agent(gateway=gateway(m=fake), model="m", tools=[calculator]).run("40+2?")
    fields = run.eval_fields()
    assert fields["text"] == "42" and fields["trace_id"] == run.trace_id
    assert fields["tool_calls"] == [call("calculator", {"expression": "40+2"})]
    assert fields["data"]["stop_reason"] == "final_answer" and fields["data"]["steps_used"] == 2
    try:
        from aiapp.evals import Output  # the eval harness's output type, when it is installed
    except ImportError:
        return
    assert Output(**fields).text == "42"


def test_gateway_guards_and_budgets_end_the_run_with_a_reason() -> None:
    from aiapp.errors import BudgetExceededError, GuardrailError

    blocked = GuardrailError(guard="injection", reason="prompt injection in the input", stage="input")
    fake = FakeModel([[call("calculator", {"expression": "1"})], blocked])
    run = Agent(gateway=gateway(m=fake), model="m", tools=[calculator]).run("x")
    assert run.stop_reason == "guardrail" and "'injection' blocked the model call's input" in run.detail

    over = BudgetExceededError(
        scope="route",
        name="m",
        spent_usd=1.0,
        reserved_usd=0.0,
        limit_usd=1.0,
        needed_usd=0.1,
        window="daily",
        period="2026-01-01",
    )
    run = Agent(gateway=gateway(m=FakeModel([over])), model="m").run("x")
    assert run.stop_reason == "budget" and run.output is None
