"""Agents: typed tools, a loop with limits and permissions, memory, and a trace of every step.

- :func:`tool` / :class:`Tool` — a Python function the model can call; JSON schema from the signature
  and docstring, pydantic-validated arguments, ``read_only``/``requires_approval``, injected
  :class:`Secret` and :class:`ToolContext` parameters the model never sees.
- :class:`Agent` — ``run``/``arun``/``stream``/``astream`` a task: native tool calling, or the ReAct
  text protocol for models without it; parallel tool calls; :class:`AgentLimits` on steps, calls per tool,
  tokens, cost and wall time, each ending the run with its stop reason.
- :class:`AgentRun` — the result: output, steps, tool calls, usage, stop reason, trace id, success.
- :class:`Memory` — :class:`ConversationMemory` and a :class:`LongTermMemory` — :class:`IndexMemory`
  (an aiapp retrieval index) or :class:`VectorMemory` (in memory / a JSON file) — scoped per
  user/session (:class:`MemoryScope`).
- :mod:`aiapp.agents.tools` — built-in tools: search, calculator, read-only SQL, allowlisted HTTP GET;
  :func:`build_agent` builds an agent from tool names (the CLI and eval suites use it).

Traces: the run is an ``agent`` span; each model call (``llm``), tool call (``tool``) and approval
(``approval``) is a span under it — ``aiapp traces show ID`` prints them as a timeline.
"""

from aiapp.agents._agent import DEFAULT_SYSTEM, Agent, AgentStream, AsyncAgentStream
from aiapp.agents._build import build_agent, open_retriever
from aiapp.agents._index_memory import IndexMemory
from aiapp.agents._memory import ConversationMemory, LongTermMemory, Memory, MemoryScope, VectorMemory
from aiapp.agents._run import (
    AgentLimits,
    AgentRun,
    AgentStep,
    ApprovalDecision,
    ApprovalRequest,
    Approver,
    StopReason,
    SuccessCheck,
    ToolCallRecord,
    ToolStatus,
    approve_all,
    deny_all,
)
from aiapp.agents._schema import Docstring, parse_docstring
from aiapp.agents._tool import Secret, Tool, ToolContext, format_result, tool

__all__ = [
    "DEFAULT_SYSTEM",
    "Agent",
    "AgentLimits",
    "AgentRun",
    "AgentStep",
    "AgentStream",
    "ApprovalDecision",
    "ApprovalRequest",
    "Approver",
    "AsyncAgentStream",
    "ConversationMemory",
    "Docstring",
    "IndexMemory",
    "LongTermMemory",
    "Memory",
    "MemoryScope",
    "Secret",
    "StopReason",
    "SuccessCheck",
    "Tool",
    "ToolCallRecord",
    "ToolContext",
    "ToolStatus",
    "VectorMemory",
    "approve_all",
    "build_agent",
    "deny_all",
    "format_result",
    "open_retriever",
    "parse_docstring",
    "tool",
]
