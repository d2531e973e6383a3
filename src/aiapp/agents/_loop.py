"""One agent run: the loop of model calls and tool calls, its limits, and its trace.

Each step calls the model through the gateway (whose span nests under the run's ``agent`` span),
then runs the tool calls it asked for. A call goes through, in order: is the tool known, is its
per-run cap reached, is it permitted (read-only, or granted), are its arguments valid, is it
approved (when it requires approval). Calls that pass run concurrently. Every call, refused or not,
is a ``tool`` span with its arguments and result; every approval an ``approval`` span.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiapp.agents import _react as react
from aiapp.agents._memory import MemoryScope
from aiapp.agents._run import (
    AgentRun,
    AgentStep,
    ApprovalDecision,
    ApprovalRequest,
    StopReason,
    SuccessCheck,
    ToolCallRecord,
)
from aiapp.agents._tool import ArgumentsError, Tool, ToolContext, format_result
from aiapp.errors import BudgetExceededError, GuardrailError, ToolError
from aiapp.types import CallOptions, Completion, Message, ToolCall, Usage

if TYPE_CHECKING:
    from aiapp.agents._agent import Agent

_T = TypeVar("_T")
_FORMAT = "(reply format)"

Emit = Callable[[AgentStep], None]


class _OutOfTime(Exception):
    """The run's wall-clock limit was reached."""


@dataclass
class _Pending:
    """A validated call waiting to run."""

    tool: Tool
    call: ToolCall
    arguments: dict[str, Any]
    record: ToolCallRecord


class RunLoop:
    """Runs one task for an :class:`~aiapp.agents.Agent`. Use :meth:`execute` once."""

    def __init__(
        self,
        agent: Agent,
        task: str,
        *,
        scope: MemoryScope,
        success: SuccessCheck | None,
        emit: Emit | None,
    ) -> None:
        self.agent = agent
        self.gateway = agent.gateway
        self.limits = agent.limits
        self.task = task
        self.scope = scope
        self.success = success
        self.emit = emit
        self.route = agent.route
        self.native = agent.uses_native_tools()
        self.messages: list[Message] = []
        self.calls: dict[str, int] = {}
        self.invalid: dict[str, int] = {}
        self.started = 0.0
        self.deadline: float | None = None
        self.stop: tuple[StopReason, str] | None = None
        self.run = AgentRun(task=task, route=self.route, protocol="native" if self.native else "react")
        self._cost_known = True
        self._last_model = ""

    # -- the run ---------------------------------------------------------------------------------

    async def execute(self) -> AgentRun:
        """Run the task to a final answer or a limit; the whole run is one ``agent`` span."""
        tracer = self.gateway.tracer
        self.started = time.perf_counter()
        if self.limits.max_wall_s is not None:
            self.deadline = self.started + self.limits.max_wall_s
        with tracer.span("agent", self.agent.name, route=self.route, input=self.task) as span:
            self.run.trace_id = span.trace_id
            try:
                await self._steps()
            finally:
                self._finish()
                span.status = "ok" if self.run.ok else "stopped"
                span.error = None if self.run.ok else f"{self.run.stop_reason}: {self.run.detail}"
                span.output = self.run.output
                span.input_tokens = self.run.usage.input_tokens
                span.output_tokens = self.run.usage.output_tokens
                span.cost_usd = self.run.usage.cost_usd
                span.attributes = {
                    "protocol": self.run.protocol,
                    "stop_reason": self.run.stop_reason,
                    "steps": self.run.steps_used,
                    "tool_calls": len(self.run.tool_calls),
                    "tool_errors": len(self.run.tool_errors),
                    "tools": sorted(self.agent.tools),
                    "user": self.scope.user,
                    "session": self.scope.session,
                }
        if self.run.ok and self.success is not None:
            self.run.success = bool(self.success(self.run))
        memory = self.agent.memory
        if self.run.ok and memory is not None and memory.conversation is not None:
            memory.conversation.append(
                self.scope, [Message.user(self.task), Message.assistant(self.run.output or "")]
            )
        return self.run

    async def _steps(self) -> None:
        self.messages = await self._initial_messages()
        if self.agent.prefetch:
            await self._prefetch()
        step = 0
        while self.stop is None:
            if step >= self.limits.max_steps:
                self._stop("max_steps", f"reached max_steps={self.limits.max_steps} without a final answer")
                break
            if self._out_of_time():
                break
            step += 1
            try:
                completion = await self._timed(self._model_call(step))
            except _OutOfTime:
                self._stop_wall()
                break
            except GuardrailError as exc:  # e.g. an injection in a tool result, caught on the way in
                self._stop(
                    "guardrail", f"guard {exc.guard!r} blocked the model call's {exc.stage}: {exc.reason}"
                )
                break
            except BudgetExceededError as exc:
                self._stop("budget", str(exc))
                break
            self._account(completion)
            record = AgentStep(index=step, usage=completion.usage)
            self.run.steps.append(record)
            await self._handle_reply(record, completion)
            if self.emit is not None:
                self.emit(record)

    def _finish(self) -> None:
        reason, detail = self.stop or ("max_steps", "the run ended without a final answer")
        self.run.stop_reason = reason
        self.run.detail = detail
        self.run.messages = list(self.messages)
        self.run.duration_ms = (time.perf_counter() - self.started) * 1000.0

    # -- messages ----------------------------------------------------------------------------------

    async def _initial_messages(self) -> list[Message]:
        agent = self.agent
        system = agent.system
        memory = agent.memory
        if memory is not None and memory.long_term is not None and memory.recall_k > 0:
            with self.gateway.tracer.span("memory", "recall", input=self.task) as span:
                long_term = memory.long_term
                hits = await asyncio.to_thread(
                    lambda: long_term.recall(self.task, scope=self.scope, k=memory.recall_k)
                )
                span.output = [h.text for h in hits]
            if hits:
                remembered = "\n".join(f"- {h.text}" for h in hits)
                system = f"{system}\n\nWhat you remember that may be relevant:\n{remembered}"
        if not self.native:
            system = react.system_prompt(system, list(agent.tools.values()))
        history = memory.conversation.history(self.scope) if memory and memory.conversation else []
        first = react.task_message(self.task) if not self.native else Message.user(self.task)
        return [Message.system(system), *history, first]

    def _options(self) -> CallOptions:
        base = self.agent.options or CallOptions()
        if self.native:
            extra = CallOptions(tools=tuple(t.spec for t in self.agent.tools.values()))
        else:
            extra = CallOptions(stop=react.STOP)
        return base.merged(extra)

    async def _model_call(self, step: int) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.route,
            "options": self._options(),
            "metadata": {"agent": self.agent.name, "step": step},
        }
        return await self.gateway.acomplete(list(self.messages), **kwargs)

    async def _prefetch(self) -> None:
        calls = []
        for i, name in enumerate(self.agent.prefetch):
            tool = self.agent.tools[name]
            param = next(iter(tool.schema.model.model_fields))
            calls.append(ToolCall(id=f"prefetch-{i}", name=name, arguments=json.dumps({param: self.task})))
        if self.native:
            self.messages.append(Message.assistant("", tool_calls=tuple(calls)))
        else:
            text = "\n".join(react.action_text(c.name, c.arguments) for c in calls)
            self.messages.append(Message.assistant(text))
        record = AgentStep(index=0)
        self.run.steps.append(record)
        record.tool_calls = self._records(calls)
        try:
            await self._timed(self._run_calls(0, calls, record.tool_calls))
        except _OutOfTime:
            self._stop_wall()
        if self.emit is not None:
            self.emit(record)

    # -- one reply ---------------------------------------------------------------------------------

    async def _handle_reply(self, record: AgentStep, completion: Completion) -> None:
        if self.native:
            record.text = completion.text
            calls = list(completion.tool_calls)
            self.messages.append(completion.message())
            if not calls:
                self._final(record, completion.text)
                return
        else:
            parsed = react.parse(completion.text)
            record.text = parsed.text
            self.messages.append(Message.assistant(parsed.text))
            if parsed.error is not None:
                self._invalid(_FORMAT)
                self.messages.append(react.format_error_message(parsed.error, self.task))
                self._check_retries(_FORMAT)
                return
            self.invalid[_FORMAT] = 0
            if parsed.final is not None:
                self._final(record, parsed.final)
                return
            calls = [
                ToolCall(
                    id=f"react-{record.index}-{i}", name=name, arguments=self._react_arguments(name, raw)
                )
                for i, (name, raw) in enumerate(parsed.actions)
            ]
        over_budget = self._budget_stop(record.index)
        if over_budget is not None:
            self._stop(*over_budget)
            record.tool_calls = [
                ToolCallRecord(
                    call_id=c.id,
                    tool=c.name,
                    arguments=self._redact(c.arguments),
                    status="not_run",
                    error=f"not run: {over_budget[0]}",
                )
                for c in calls
            ]
            return
        record.tool_calls = self._records(calls)
        try:
            await self._timed(self._run_calls(record.index, calls, record.tool_calls))
        except _OutOfTime:
            self._stop_wall()

    def _final(self, record: AgentStep, text: str) -> None:
        record.final = True
        self.run.output = text
        self._stop("final_answer", "the model gave its final answer")

    def _react_arguments(self, name: str, raw: str) -> str:
        """Accept a bare value for a tool with exactly one argument (``Action Input: ollama port``)."""
        tool = self.agent.tools.get(name)
        try:
            if isinstance(json.loads(raw or "{}"), dict):
                return raw or "{}"
        except json.JSONDecodeError:
            pass
        if tool is not None and len(tool.schema.model.model_fields) == 1:
            param = next(iter(tool.schema.model.model_fields))
            return json.dumps({param: raw.strip().strip("'\"")})
        return raw

    # -- tool calls --------------------------------------------------------------------------------

    def _records(self, calls: list[ToolCall]) -> list[ToolCallRecord]:
        return [
            ToolCallRecord(call_id=c.id, tool=c.name, arguments=self._redact(c.arguments), status="not_run")
            for c in calls
        ]

    async def _run_calls(self, step: int, calls: list[ToolCall], records: list[ToolCallRecord]) -> None:
        """Admit, approve and run ``calls``, filling in ``records``; the results join the conversation."""
        pending: list[_Pending] = []
        for call, record in zip(calls, records, strict=True):
            ready = self._admit(call, record)
            if ready is not None:
                pending.append(ready)
        approved = [p for p in pending if await self._approve(p)]
        try:
            await asyncio.gather(*(self._execute(step, p) for p in approved))
        finally:
            self._reply_with(records)

    def _admit(self, call: ToolCall, record: ToolCallRecord) -> _Pending | None:
        """Checks before running: known tool, cap, permission, valid arguments."""
        tool = self.agent.tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self.agent.tools)) or "(none)"
            self._reject(
                record, "unknown_tool", f"there is no tool named {call.name!r}; the tools are: {known}"
            )
            self._rejected_span(call, record)
            self._invalid(call.name)
            self._check_retries(call.name)
            return None
        cap = self.limits.max_tool_calls_per_tool
        if cap is not None and self.calls.get(tool.name, 0) >= cap:
            record.error = f"not run: {tool.name!r} was already called {cap} times (max_tool_calls_per_tool)"
            record.result = record.error
            self._stop("max_tool_calls", f"tool {tool.name!r} reached max_tool_calls_per_tool={cap}")
            return None
        if not self.agent.permits(tool):
            self._reject(
                record,
                "refused",
                f"permission denied: {tool.name!r} has side effects and this agent was not granted it",
                hint="; do not call it again",
            )
            self._rejected_span(call, record)
            return None
        try:
            arguments = tool.validate(call.arguments)
        except ArgumentsError as exc:
            self._reject(
                record, "invalid_arguments", str(exc), hint=f". Fix them and call {tool.name} again."
            )
            self._rejected_span(call, record)
            self._invalid(tool.name)
            self._check_retries(tool.name)
            return None
        self.invalid[tool.name] = 0
        self.calls[tool.name] = self.calls.get(tool.name, 0) + 1
        return _Pending(tool, call, arguments, record)

    def _rejected_span(self, call: ToolCall, record: ToolCallRecord) -> None:
        with self.gateway.tracer.span("tool", call.name, input=record.arguments) as span:
            span.status, span.error = "error", record.error
            span.attributes = {"call_id": call.id, "status": record.status}

    async def _approve(self, pending: _Pending) -> bool:
        tool, record = pending.tool, pending.record
        if not tool.requires_approval:
            return True
        request = ApprovalRequest(
            tool=tool.name,
            description=tool.description,
            arguments=dict(pending.arguments),
            call_id=pending.call.id,
            user=self.scope.user,
            session=self.scope.session,
            read_only=tool.read_only,
            trace_id=self.run.trace_id,
        )
        with self.gateway.tracer.span("approval", tool.name, input=record.arguments) as span:
            decision = await self._decide(request)
            span.output = "approved" if decision.approved else "denied"
            span.attributes = {
                "call_id": pending.call.id,
                "approved": decision.approved,
                "by": decision.by,
                "reason": decision.reason,
            }
        record.approved = decision.approved
        if not decision.approved:
            why = f" ({decision.reason})" if decision.reason else ""
            self._reject(
                record, "denied", f"the call to {tool.name!r} was not approved{why}", hint="; do not retry it"
            )
        return decision.approved

    async def _decide(self, request: ApprovalRequest) -> ApprovalDecision:
        approver = self.agent.approval
        if approver is None:
            return ApprovalDecision(False, "no approver is configured for this agent", by="none")
        if inspect.iscoroutinefunction(approver):
            answer: Any = await approver(request)
        else:
            answer = await asyncio.to_thread(approver, request)
            if inspect.isawaitable(answer):
                answer = await answer
        if isinstance(answer, ApprovalDecision):
            return answer
        return ApprovalDecision(bool(answer), by=getattr(approver, "__name__", "approver"))

    async def _execute(self, step: int, pending: _Pending) -> None:
        tool, record = pending.tool, pending.record
        context = ToolContext(
            user=self.scope.user,
            session=self.scope.session,
            trace_id=self.run.trace_id,
            step=step,
            call_id=pending.call.id,
            memory=self.agent.memory.long_term if self.agent.memory else None,
        )
        with self.gateway.tracer.span("tool", tool.name, input=record.arguments) as span:
            span.attributes = {"call_id": pending.call.id, "read_only": tool.read_only, "step": step}
            t0 = time.perf_counter()
            try:
                value = await tool.invoke(pending.arguments, context=context, secrets=self.agent.secrets)
                record.status = "ok"
                record.result = self._clip(self._redact(format_result(value)))
            except ToolError as exc:
                self._reject(record, "error", self._redact(str(exc)))
            except Exception as exc:  # a tool's own failure goes back to the model, not up the stack
                self._reject(record, "error", self._redact(f"{type(exc).__name__}: {exc}"))
            finally:
                record.duration_ms = (time.perf_counter() - t0) * 1000.0
            span.output = record.result
            span.status = "ok" if record.ok else "error"
            span.error = record.error
            span.attributes["status"] = record.status

    def _reply_with(self, records: list[ToolCallRecord]) -> None:
        """Append the tool results (or errors) the model will read next."""
        for record in records:
            if record.status == "not_run" and not record.result:
                record.result = record.error or "not run: the agent stopped"
                record.error = record.error or record.result
        if self.native:
            self.messages.extend(Message.tool(r.result, tool_call_id=r.call_id, name=r.tool) for r in records)
        elif records:
            self.messages.append(react.observation_message([(r.tool, r.result) for r in records], self.task))

    def _reject(self, record: ToolCallRecord, status: Any, message: str, *, hint: str = "") -> None:
        """Mark a call failed: ``error`` for people, ``result`` (with what to do next) for the model."""
        record.status = status
        record.error = message
        record.result = f"Error: {message}{hint}"

    # -- limits ------------------------------------------------------------------------------------

    def _stop(self, reason: StopReason, detail: str) -> None:
        if self.stop is None:
            self.stop = (reason, detail)

    def _stop_wall(self) -> None:
        self._stop("max_wall_time", f"reached max_wall_s={self.limits.max_wall_s:g} without a final answer")

    def _out_of_time(self) -> bool:
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            self._stop_wall()
            return True
        return False

    async def _timed(self, work: Coroutine[Any, Any, _T]) -> _T:
        if self.deadline is None:
            return await work
        remaining = self.deadline - time.perf_counter()
        if remaining <= 0:
            work.close()
            raise _OutOfTime
        try:
            return await asyncio.wait_for(work, remaining)
        except TimeoutError as exc:
            raise _OutOfTime from exc

    def _account(self, completion: Completion) -> None:
        usage = self.run.usage
        cost = completion.usage.cost_usd
        if cost is None:
            self._cost_known = False
        total = None if not self._cost_known else (usage.cost_usd or 0.0) + (cost or 0.0)
        self.run.usage = Usage(
            input_tokens=usage.input_tokens + completion.usage.input_tokens,
            output_tokens=usage.output_tokens + completion.usage.output_tokens,
            cost_usd=total,
        )
        self._last_model = completion.deployment or completion.model

    def _budget_stop(self, step: int) -> tuple[StopReason, str] | None:
        """Why the tools this step asked for must not run: the run cannot go on after them."""
        usage, limits = self.run.usage, self.limits
        if step >= limits.max_steps:
            return "max_steps", f"reached max_steps={limits.max_steps} without a final answer"
        if limits.max_tokens is not None and usage.total_tokens >= limits.max_tokens:
            return "max_tokens", f"used {usage.total_tokens} tokens, max_tokens={limits.max_tokens}"
        if limits.max_cost_usd is not None:
            if usage.cost_usd is None:
                return "max_cost", (
                    f"the cost of {self._last_model or 'the model'} is unknown, so "
                    f"max_cost_usd={limits.max_cost_usd:g} cannot be enforced; add a price under pricing:"
                )
            if usage.cost_usd >= limits.max_cost_usd:
                return "max_cost", f"spent ${usage.cost_usd:.6f}, max_cost_usd={limits.max_cost_usd:g}"
        return None

    def _invalid(self, key: str) -> None:
        self.invalid[key] = self.invalid.get(key, 0) + 1

    def _check_retries(self, key: str) -> None:
        if self.invalid.get(key, 0) > self.limits.max_retries:
            what = (
                "replies that do not follow the protocol" if key == _FORMAT else f"invalid calls of {key!r}"
            )
            self._stop(
                "invalid_tool_calls",
                f"{self.invalid[key]} {what} in a row (max_retries={self.limits.max_retries})",
            )

    # -- content hygiene ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in self.agent.secrets.values():
            value = secret.get()
            if len(value) >= 4:
                text = text.replace(value, "[secret]")
        return text

    def _clip(self, text: str) -> str:
        limit = self.agent.max_result_chars
        if len(text) <= limit:
            return text
        return f"{text[:limit]}\n[… {len(text) - limit} more characters cut]"
