"""The :class:`Agent`: a model, typed tools, permissions, limits and memory, run as one traced loop.

>>> agent = Agent(gateway=gw, model="openai", tools=[search_tool(index), calculator])
>>> run = agent.run("How much RAM do three 7B models need?")
>>> run.output, run.stop_reason, run.steps_used, run.trace_id
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

from aiapp.agents._loop import RunLoop
from aiapp.agents._memory import Memory, MemoryScope
from aiapp.agents._run import AgentLimits, AgentRun, AgentStep, Approver, SuccessCheck
from aiapp.agents._tool import Secret, Tool, tool
from aiapp.errors import InputError
from aiapp.gateway import Gateway, iter_sync, sync_method
from aiapp.types import CallOptions

_T = TypeVar("_T")

DEFAULT_SYSTEM = (
    "You are a helpful assistant. Use the tools when they help, and answer from their results. "
    "Be concise; say so when you cannot find the answer."
)


class Agent:
    """A model that uses tools in a loop until it answers, within limits, every step traced.

    Args:
        gateway: The gateway to call models through (default: ``Gateway.from_config()``).
        model: The route (or ``provider/model``); default: the gateway's default route.
        tools: Tools (``@tool`` functions; plain functions are wrapped, as side-effecting tools).
        system: The system prompt.
        limits: Steps, calls per tool, tokens, cost, wall time and retries (see :class:`AgentLimits`).
        allow: Side-effecting tools this agent may run (names, or ``"all"``). Read-only tools always run.
        approval: Callback deciding calls to tools that require approval; without one they are denied.
        memory: Conversation and long-term memory (a long-term store adds ``remember``/``recall`` tools).
        secrets: Secret name → value, injected into tools that declare a ``Secret`` parameter of that
            name. Values never reach the model, and are masked in tool results and traces.
        protocol: ``"native"`` tool calling, the ``"react"`` text protocol, or ``"auto"`` (native when
            the route's model supports tools).
        prefetch: Read-only, one-argument tools to call with the task before the first model call
            (e.g. ``["search"]``): their results open the conversation. This is how a model that cannot
            call tools (the ``local/extractive`` baseline) still answers from them.
        options: Call options for every model call (tools and stop sequences are added).
        name: The agent's name (names its trace spans).
        max_result_chars: Tool results longer than this are cut before the model reads them.
        success: Default success check for runs (see :meth:`run`).

    Raises:
        InputError: for duplicate tool names, unknown names in ``allow``/``prefetch`` or a prefetch
            tool that is not read-only with one argument.
    """

    def __init__(
        self,
        *,
        gateway: Gateway | None = None,
        model: str | None = None,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        system: str = DEFAULT_SYSTEM,
        limits: AgentLimits | None = None,
        allow: Iterable[str] | Literal["all"] = (),
        approval: Approver | None = None,
        memory: Memory | None = None,
        secrets: Mapping[str, str | Secret] | None = None,
        protocol: Literal["auto", "native", "react"] = "auto",
        prefetch: Sequence[str] = (),
        options: CallOptions | None = None,
        name: str = "agent",
        max_result_chars: int = 8000,
        success: SuccessCheck | None = None,
    ) -> None:
        self._gateway = gateway
        self._model = model
        self.system = system
        self.limits = limits or AgentLimits()
        self.approval = approval
        self.memory = memory
        self.protocol = protocol
        self.options = options
        self.name = name
        self.max_result_chars = max_result_chars
        self.success = success
        self.secrets: dict[str, Secret] = {
            key: value if isinstance(value, Secret) else Secret(value)
            for key, value in (secrets or {}).items()
        }
        self.tools: dict[str, Tool] = {}
        granted: set[str] = set()
        for item in tools:
            self._add(item if isinstance(item, Tool) else tool(item))
        if memory is not None and memory.long_term is not None:
            from aiapp.agents.tools import memory_tools

            for memory_tool in memory_tools():
                if memory_tool.name not in self.tools:
                    self._add(memory_tool)
                    granted.add(memory_tool.name)
        self.allow_all = allow == "all"
        if not self.allow_all:
            names = set(allow)
            unknown = sorted(names - set(self.tools))
            if unknown:
                raise InputError(f"allow= names tools this agent does not have: {unknown}")
            granted |= names
        self.granted = frozenset(granted)
        for name_ in prefetch:
            prefetched = self.tools.get(name_)
            if prefetched is None:
                raise InputError(f"prefetch= names a tool this agent does not have: {name_!r}")
            if not prefetched.read_only or len(prefetched.schema.model.model_fields) != 1:
                raise InputError(f"prefetch tool {name_!r} must be read-only and take exactly one argument")
        self.prefetch = tuple(prefetch)

    def _add(self, item: Tool) -> None:
        if item.name in self.tools:
            raise InputError(f"two tools are named {item.name!r}; give one a different name=")
        self.tools[item.name] = item

    # -- configuration -----------------------------------------------------------------------------

    @property
    def gateway(self) -> Gateway:
        """The gateway (built from the discovered config on first use when none was given)."""
        if self._gateway is None:
            self._gateway = Gateway.from_config()
        return self._gateway

    @property
    def route(self) -> str:
        """The route model calls go to."""
        return self._model or self.gateway.settings.default_route

    def uses_native_tools(self) -> bool:
        """Whether runs use native tool calling (else the ReAct text protocol)."""
        if self.protocol != "auto":
            return self.protocol == "native"
        return bool(self.gateway.model(self.route).info.supports_tools)

    def permits(self, item: Tool) -> bool:
        """Whether this agent may run ``item``: read-only, or a granted side-effecting tool."""
        return item.read_only or self.allow_all or item.name in self.granted

    # -- running -----------------------------------------------------------------------------------

    async def arun(
        self,
        task: str,
        *,
        user: str = "default",
        session: str = "default",
        success: SuccessCheck | None = None,
    ) -> AgentRun:
        """Run ``task`` to a final answer or a limit.

        Args:
            task: What to do, in words.
            user: Whose run this is (scopes memory; passed to tools and approvals).
            session: The conversation (scopes conversation memory).
            success: Decides ``run.success`` when the run answers (e.g. for evals).

        Returns:
            The run: ``output`` (``None`` unless ``stop_reason == "final_answer"``), steps, usage and
            trace id. Limits end the run with a stop reason rather than an exception;
            :meth:`AgentRun.raise_for_stop` turns that into :class:`~aiapp.errors.AgentLimitError`.

        Raises:
            ProviderError: when the model cannot be reached (the run's span records the error).
        """
        return await self._execute(task, user=user, session=session, success=success, emit=None)

    run = sync_method(arun)

    def astream(self, task: str, *, user: str = "default", session: str = "default") -> AsyncAgentStream:
        """Run ``task``, yielding each :class:`AgentStep` as it completes (``async for``).

        The finished :class:`AgentRun` is ``stream.run`` once iteration ends.
        """
        return AsyncAgentStream(self, task, MemoryScope(user, session))

    def stream(self, task: str, *, user: str = "default", session: str = "default") -> AgentStream:
        """Sync :meth:`astream`: iterate the steps, then read ``stream.run``."""
        return AgentStream(self, task, MemoryScope(user, session))

    async def _execute(
        self,
        task: str,
        *,
        user: str,
        session: str,
        success: SuccessCheck | None,
        emit: Callable[[AgentStep], None] | None,
    ) -> AgentRun:
        if not task.strip():
            raise InputError("the agent's task is empty")
        loop = RunLoop(
            self,
            task,
            scope=MemoryScope(user, session),
            success=success or self.success,
            emit=emit,
        )
        return await loop.execute()

    def __repr__(self) -> str:
        return f"<Agent {self.name} route={self._model or 'default'} tools={sorted(self.tools)}>"


class AsyncAgentStream:
    """The steps of a run as they complete (``async for step in stream``); then ``stream.run``."""

    def __init__(self, agent: Agent, task: str, scope: MemoryScope) -> None:
        self._agent, self._task, self._scope = agent, task, scope
        self.run: AgentRun | None = None

    async def __aiter__(self) -> AsyncIterator[AgentStep]:
        steps: asyncio.Queue[AgentStep | None] = asyncio.Queue()
        work = asyncio.ensure_future(
            self._agent._execute(
                self._task,
                user=self._scope.user,
                session=self._scope.session,
                success=None,
                emit=steps.put_nowait,
            )
        )
        work.add_done_callback(lambda _: steps.put_nowait(None))
        try:
            while (step := await steps.get()) is not None:
                yield step
            self.run = await work
        finally:
            if not work.done():
                work.cancel()


class AgentStream:
    """The steps of a run as they complete (``for step in stream``); then ``stream.run``.

    It drives :class:`AsyncAgentStream` step by step (:func:`~aiapp.gateway.iter_sync`); stopping
    iteration early cancels the run.
    """

    def __init__(self, agent: Agent, task: str, scope: MemoryScope) -> None:
        self._steps = AsyncAgentStream(agent, task, scope)

    @property
    def run(self) -> AgentRun | None:
        """The finished run, once iteration has ended."""
        return self._steps.run

    def __iter__(self) -> Iterator[AgentStep]:
        return iter_sync(self._steps.__aiter__())
