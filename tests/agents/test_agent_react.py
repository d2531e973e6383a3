"""The ReAct text protocol, for models without native tool calling (and the offline baseline)."""

from __future__ import annotations

from agent_helpers import KeywordRetriever, gateway

from aiapp.agents import Agent, AgentLimits
from aiapp.agents import _react as react
from aiapp.agents.tools import calculator, search_tool
from aiapp.config import Settings
from aiapp.gateway import Gateway, ModelInfo
from aiapp.testing import FakeModel

NO_TOOLS = ModelInfo(supports_tools=False)


def test_parse_action_final_and_errors() -> None:
    reply = react.parse(
        'Thought: need math\nAction: calculator\nAction Input: {"expression": "2+2"}\n'
        "Observation: 4\nThought: done\nFinal Answer: 4"
    )
    assert reply.actions == [("calculator", '{"expression": "2+2"}')] and reply.final is None
    assert "Observation" not in reply.text  # a made-up observation is cut off

    fenced = react.parse('Action: `search`\nAction Input:\n```json\n{"query": "port"}\n```')
    assert fenced.actions == [("search", '{"query": "port"}')]

    final = react.parse("Thought: I know it.\nFinal Answer: Port 11434.\nIt is the default.")
    assert final.final == "Port 11434.\nIt is the default." and not final.actions

    assert react.parse("Action: search").error is not None
    plain = react.parse("Ollama listens on port 11434 [1].")
    assert plain.final == "Ollama listens on port 11434 [1]."


def test_react_run_with_scripted_text_replies() -> None:
    fake = FakeModel(
        [
            'Thought: I should search.\nAction: search\nAction Input: {"query": "7B RAM"}',
            'Thought: now multiply.\nAction: calculator\nAction Input: {"expression": "3 * 8"}',
            "Thought: done.\nFinal Answer: 24 GB",
        ],
        info=NO_TOOLS,
    )
    agent = Agent(gateway=gateway(m=fake), model="m", tools=[search_tool(KeywordRetriever()), calculator])
    run = agent.run("RAM for three 7B models?")
    assert run.protocol == "react" and run.ok and run.output == "24 GB"
    assert [c.status for c in run.tool_calls] == ["ok", "ok"]
    first = fake.calls[0]
    assert not first.options.tools and first.options.stop == react.STOP
    assert "Action Input:" in first.messages[0].content and "- calculator:" in first.messages[0].content
    assert first.messages[-1].content == "Question: RAM for three 7B models?"
    observation = fake.calls[2].messages[-1].content
    assert observation.startswith("Observation from calculator:\n<context>\n24\n</context>")
    assert observation.endswith("Question: RAM for three 7B models?")


def test_react_malformed_action_is_corrected() -> None:
    fake = FakeModel(
        [
            "Thought: compute.\nAction: calculator",  # no Action Input
            'Action: calculator\nAction Input: {"expression": 12}',  # wrong type
            'Action: calculator\nAction Input: {"expression": "12/4"}',
            "Final Answer: 3",
        ],
        info=NO_TOOLS,
    )
    run = Agent(gateway=gateway(m=fake), model="m", tools=[calculator]).run("12/4?")
    assert run.ok and run.output == "3"
    assert "could not be parsed" in fake.calls[1].messages[-1].content
    assert "expression: Input should be a valid string" in fake.calls[2].messages[-1].content
    assert [c.status for c in run.tool_calls] == ["invalid_arguments", "ok"]


def test_react_bare_input_for_a_one_argument_tool() -> None:
    fake = FakeModel(["Action: calculator\nAction Input: 2 ** 10", "Final Answer: 1024"], info=NO_TOOLS)
    run = Agent(gateway=gateway(m=fake), model="m", tools=[calculator]).run("2^10?")
    assert run.tool_calls[0].result == "1024"


def test_react_format_errors_are_bounded() -> None:
    fake = FakeModel(default="Action: calculator", info=NO_TOOLS)
    run = Agent(
        gateway=gateway(m=fake), model="m", tools=[calculator], limits=AgentLimits(max_retries=1)
    ).run("x")
    assert run.stop_reason == "invalid_tool_calls" and "do not follow the protocol" in run.detail


def test_offline_baseline_answers_from_a_prefetched_search() -> None:
    """local/extractive cannot call tools; prefetching the search lets it answer from the results."""
    retriever = KeywordRetriever()
    gw = Gateway(Settings())
    agent = Agent(gateway=gw, tools=[search_tool(retriever), calculator], prefetch=["search"])
    assert not agent.uses_native_tools()
    run = agent.run("Which port does Ollama bind to by default?")
    assert run.ok and run.protocol == "react"
    assert "11434" in (run.output or "")
    assert retriever.queries == ["Which port does Ollama bind to by default?"]
    assert run.steps[0].index == 0 and run.steps[0].tool_calls[0].tool == "search"
    assert run.steps_used == 1
    kinds = [s.kind for s in gw.tracer.store.trace(run.trace_id)]  # type: ignore[union-attr]
    assert kinds == ["agent", "tool", "llm"]


def test_native_prefetch_uses_a_tool_call_turn() -> None:
    fake = FakeModel(["Port 11434."])
    retriever = KeywordRetriever()
    run = Agent(gateway=gateway(m=fake), model="m", tools=[search_tool(retriever)], prefetch=["search"]).run(
        "default port?"
    )
    assert run.ok
    roles = [m.role for m in fake.last_messages]
    assert roles == ["system", "user", "assistant", "tool"]
    assert fake.last_messages[2].tool_calls[0].name == "search"
