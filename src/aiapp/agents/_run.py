"""What an agent run produces: its steps, tool calls, usage and why it stopped.

An :class:`AgentRun` is also what an eval target reads: ``success`` (the task's success check),
``steps_used``, ``tool_errors``, ``stop_reason`` and ``usage``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aiapp.errors import AgentLimitError
from aiapp.types import Message, ToolCall, Usage

StopReason = Literal[
    "final_answer",
    "max_steps",
    "max_tool_calls",
    "max_tokens",
    "max_cost",
    "max_wall_time",
    "invalid_tool_calls",
    "guardrail",
    "budget",
]
"""Why a run ended. Only ``final_answer`` carries an answer. ``guardrail`` and ``budget``: the
gateway refused a model call (a guard blocked its input or reply; a spend budget would be exceeded)."""

ToolStatus = Literal["ok", "error", "invalid_arguments", "unknown_tool", "refused", "denied", "not_run"]
"""What happened to one tool call: ran (``ok``/``error``), rejected before running (bad arguments, an
unknown name, no permission, approval denied), or never run because the run stopped first."""


class AgentLimits(BaseModel):
    """Bounds on one agent run; each one reached ends the run with its own stop reason.

    Attributes:
        max_steps: Model calls per run (``max_steps``); tool calls asked for in the last step are
            not run, since no model call could read their results.
        max_tool_calls_per_tool: Calls of any one tool per run (``max_tool_calls``).
        max_tokens: Input plus output tokens over all model calls (``max_tokens``).
        max_cost_usd: Spend over all model calls (``max_cost``); a model whose cost is unknown stops
            the run, since the cap could not be enforced.
        max_wall_s: Wall-clock seconds for the whole run (``max_wall_time``). A sync tool still
            running then is abandoned in its worker thread, not killed.
        max_retries: Consecutive invalid calls of one tool (bad arguments, unknown name, bad text
            protocol) the model may correct before the run ends (``invalid_tool_calls``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_steps: int = Field(default=10, ge=1)
    max_tool_calls_per_tool: int | None = Field(default=10, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_wall_s: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=2, ge=0)


class ToolCallRecord(BaseModel):
    """One tool call: what the model asked for and what came of it.

    Attributes:
        call_id: The call's id (the model's, or a generated one for the text protocol).
        tool: The tool's name as the model wrote it.
        arguments: The raw JSON arguments the model sent (never any injected secrets).
        status: See :data:`ToolStatus`.
        result: What the model was told (the result, or the error message).
        error: The error message, for any status but ``ok``.
        duration_ms: Time spent running the tool (0 when it did not run).
        approved: The approval decision, for tools that require one.
    """

    call_id: str
    tool: str
    arguments: str = "{}"
    status: ToolStatus = "ok"
    result: str = ""
    error: str | None = None
    duration_ms: float = 0.0
    approved: bool | None = None

    @property
    def ok(self) -> bool:
        """Whether the tool ran and returned a result."""
        return self.status == "ok"


class AgentStep(BaseModel):
    """One step of a run: a model reply and the tool calls it asked for.

    A step with ``index`` 0 holds the prefetch calls the agent made before the first model call.

    Attributes:
        index: 1-based model-call number (0 for prefetch).
        text: The model's text (the thought, or the final answer).
        tool_calls: The calls it asked for, with their outcomes.
        usage: The model call's usage.
        final: Whether this step gave the final answer.
    """

    index: int
    text: str = ""
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    final: bool = False


class AgentRun(BaseModel):
    """The result of one agent run.

    Attributes:
        task: The task as given.
        output: The final answer; ``None`` when the run stopped before one.
        stop_reason: Why the run ended.
        detail: The stop reason in words (which limit, which tool).
        steps: Every step, in order.
        messages: The whole conversation sent to the model, ending with its last reply.
        usage: Summed over model calls; ``cost_usd`` is ``None`` if any call's cost was unknown.
        duration_ms: Wall time of the run.
        trace_id: The trace holding the run's spans (``aiapp traces show ID``).
        route: The gateway route used.
        protocol: ``native`` tool calling or the ``react`` text protocol.
        success: The task's success check, when one was given (``Agent.run(..., success=...)``).
    """

    task: str
    output: str | None = None
    stop_reason: StopReason = "final_answer"
    detail: str = ""
    steps: list[AgentStep] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    duration_ms: float = 0.0
    trace_id: str | None = None
    route: str = ""
    protocol: Literal["native", "react"] = "native"
    success: bool | None = None

    @property
    def ok(self) -> bool:
        """Whether the run ended with a final answer."""
        return self.stop_reason == "final_answer"

    @property
    def steps_used(self) -> int:
        """Model calls made."""
        return sum(1 for s in self.steps if s.index > 0)

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """Every tool call, in order."""
        return [c for s in self.steps for c in s.tool_calls]

    @property
    def tool_errors(self) -> list[ToolCallRecord]:
        """Tool calls that did not return a result (errors, invalid, refused, denied, not run)."""
        return [c for c in self.tool_calls if not c.ok]

    def raise_for_stop(self) -> AgentRun:
        """Return ``self`` when the run answered; raise :class:`AgentLimitError` otherwise."""
        if not self.ok:
            raise AgentLimitError(
                f"agent run stopped: {self.stop_reason} — {self.detail}",
                stop_reason=self.stop_reason,
                run=self,
            )
        return self

    def eval_fields(self) -> dict[str, Any]:
        """This run in the shape of an eval output (the fields of ``aiapp.evals.Output``).

        An agent eval target builds its output from these. A run stopped by a limit is a failed
        task, not a failed measurement: ``text`` is empty and ``data["stop_reason"]`` says why.
        """
        calls = [ToolCall(id=c.call_id, name=c.tool, arguments=c.arguments) for c in self.tool_calls]
        return {
            "text": self.output or "",
            "tool_calls": calls,
            "data": {**self.summary(), "detail": self.detail, "protocol": self.protocol},
            "usage": self.usage,
            "latency_ms": self.duration_ms,
            "trace_id": self.trace_id,
        }

    def summary(self) -> dict[str, Any]:
        """Flat numbers for reports and eval targets."""
        return {
            "stop_reason": self.stop_reason,
            "success": self.success,
            "steps_used": self.steps_used,
            "tool_calls": len(self.tool_calls),
            "tool_errors": len(self.tool_errors),
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cost_usd": self.usage.cost_usd,
            "duration_ms": round(self.duration_ms, 1),
            "trace_id": self.trace_id,
        }


@dataclass(frozen=True)
class ApprovalRequest:
    """What an approval callback is asked to decide.

    Attributes:
        tool: The tool's name.
        description: The tool's description.
        arguments: The validated arguments (never injected secrets).
        call_id: The tool call's id.
        user: The user the run is for.
        session: The session.
        read_only: Whether the tool is read-only.
        trace_id: The run's trace id.
    """

    tool: str
    description: str
    arguments: dict[str, Any]
    call_id: str
    user: str = "default"
    session: str = "default"
    read_only: bool = False
    trace_id: str | None = None


@dataclass(frozen=True)
class ApprovalDecision:
    """An approval callback's answer (a plain ``bool`` works too).

    Attributes:
        approved: Whether the call may run.
        reason: Why; told to the model when denied.
        by: Who decided (recorded in the trace).
    """

    approved: bool
    reason: str = ""
    by: str = ""


Approver = Callable[[ApprovalRequest], "bool | ApprovalDecision | Awaitable[bool | ApprovalDecision]"]
"""An approval callback: sync or async, returning a ``bool`` or an :class:`ApprovalDecision`."""

SuccessCheck = Callable[[AgentRun], bool]
"""Whether a finished run accomplished its task (used by eval targets)."""


def approve_all(request: ApprovalRequest) -> ApprovalDecision:
    """An approver that approves everything (for trusted, scripted runs)."""
    return ApprovalDecision(True, "approved by approve_all", by="approve_all")


def deny_all(request: ApprovalRequest) -> ApprovalDecision:
    """An approver that denies everything (the behaviour when no approver is given)."""
    return ApprovalDecision(False, "no approver is configured for this agent", by="deny_all")
