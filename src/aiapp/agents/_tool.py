"""``@tool``: a typed Python function the model can call.

>>> @tool(read_only=True)
... def add(a: int, b: int) -> int:
...     '''Add two integers.
...
...     Args:
...         a: The first number.
...         b: The second number.
...     '''
...     return a + b
>>> add.spec.name, add.spec.parameters["required"]
('add', ['a', 'b'])
>>> add(2, 3)                      # still an ordinary function
5

A tool declares what it may do: ``read_only=True`` for tools without side effects (the agent runs
them freely); side-effecting tools (the default) run only when the agent was granted them, and
``requires_approval=True`` asks the agent's approval callback first. Parameters annotated
:class:`Secret` or :class:`ToolContext` are injected by the runtime and never shown to the model.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import BaseModel, ValidationError

from aiapp.agents._memory import LongTermMemory, MemoryScope
from aiapp.agents._schema import FunctionSchema, function_schema
from aiapp.errors import InputError, ToolError
from aiapp.types import Hit, ToolSpec

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Secret:
    """A secret (API key, password) the runtime hands to a tool that declares it.

    Its ``str`` and ``repr`` never show the value, so it cannot leak into a prompt, a log line or a
    trace by accident; call :meth:`get` where the tool really needs it.

    Args:
        value: The secret value.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """The secret value."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass
class ToolContext:
    """What the runtime tells a tool about the run it serves (inject it with a ``ToolContext`` parameter).

    Attributes:
        user: The user the run is for.
        session: The conversation/session id.
        trace_id: The run's trace id.
        step: The agent step that asked for this call.
        call_id: The tool call's id.
        memory: The agent's long-term memory, when it has one.
    """

    user: str = "default"
    session: str = "default"
    trace_id: str | None = None
    step: int = 0
    call_id: str = ""
    memory: LongTermMemory | None = field(default=None, repr=False)

    @property
    def scope(self) -> MemoryScope:
        """The memory scope of this run (user and session)."""
        return MemoryScope(user=self.user, session=self.session)

    def remember(self, text: str, *, metadata: dict[str, Any] | None = None) -> str:
        """Store ``text`` in long-term memory for this user/session; returns the memory's id."""
        if self.memory is None:
            raise ToolError("this agent has no long-term memory")
        return self.memory.remember(text, scope=self.scope, metadata=metadata)

    def recall(self, query: str, *, k: int = 5) -> list[Hit]:
        """The ``k`` memories of this user/session most relevant to ``query``."""
        if self.memory is None:
            raise ToolError("this agent has no long-term memory")
        return self.memory.recall(query, scope=self.scope, k=k)


class ArgumentsError(ToolError):
    """The model's arguments for a tool are not valid JSON or do not match the tool's schema."""


_INJECTED = {Secret: "secret", ToolContext: "context"}


class Tool:
    """A function the model can call: its name, description, JSON schema and permissions.

    Build one with :func:`tool`. Calling the tool object calls the function directly.

    Args:
        fn: The function (sync or async).
        name: The name the model sees (default: the function's name).
        description: What the tool does (default: the docstring's summary).
        read_only: ``True`` when the tool has no side effects; side-effecting tools need a grant.
        requires_approval: Ask the agent's approval callback before each call.
        secrets: Parameter name → secret name, for ``Secret`` parameters whose secret is not named
            like the parameter.
        timeout_s: Abandon a call after this many seconds (reported to the model as a tool error).

    Raises:
        InputError: when the function cannot be described to a model (see :func:`function_schema`).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        read_only: bool = False,
        requires_approval: bool = False,
        secrets: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", ""))
        if not _NAME_RE.match(self.name):
            raise InputError(f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'")
        self.read_only = read_only
        self.requires_approval = requires_approval
        self.timeout_s = timeout_s
        self.schema: FunctionSchema = function_schema(
            fn, name=self.name, description=description, injected_types=_INJECTED
        )
        self.description = self.schema.description
        secret_params = [p for p, kind in self.schema.injected.items() if kind == "secret"]
        unknown = sorted(set(secrets or {}) - set(secret_params))
        if unknown:
            raise InputError(f"tool {self.name!r}: secrets= names parameters that are not Secret: {unknown}")
        self.secrets: dict[str, str] = {p: (secrets or {}).get(p, p) for p in secret_params}
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    @property
    def spec(self) -> ToolSpec:
        """The tool as offered to a model."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.schema.parameters)

    def validate(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Parse and validate the model's arguments into keyword arguments for the function.

        Raises:
            ArgumentsError: with a message the model can act on (what is wrong, per field).
        """
        if isinstance(arguments, str):
            try:
                data = json.loads(arguments or "{}")
            except json.JSONDecodeError as exc:
                raise ArgumentsError(
                    f"the arguments are not valid JSON ({exc.msg} at column {exc.colno}); "
                    "send one JSON object matching the tool's schema",
                    tool=self.name,
                ) from exc
        else:
            data = dict(arguments)
        if not isinstance(data, dict):
            raise ArgumentsError(
                f"the arguments must be a JSON object, not {type(data).__name__}", tool=self.name
            )
        try:
            parsed = self.schema.model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<arguments>'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ArgumentsError(f"invalid arguments — {problems}", tool=self.name) from exc
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    async def invoke(
        self,
        arguments: Mapping[str, Any],
        *,
        context: ToolContext | None = None,
        secrets: Mapping[str, Secret] | None = None,
    ) -> Any:
        """Call the function with validated ``arguments`` plus what the runtime injects.

        Sync functions run in a worker thread, so slow tools do not block the agent's event loop.

        Raises:
            ToolError: for a secret the agent was not given, or a timeout; whatever the function raises.
        """
        kwargs = dict(arguments)
        for param, kind in self.schema.injected.items():
            if kind == "context":
                kwargs[param] = context if context is not None else ToolContext()
            else:
                secret_name = self.secrets[param]
                secret = (secrets or {}).get(secret_name)
                if secret is None:
                    raise ToolError(
                        f"tool {self.name!r} needs the secret {secret_name!r}, which this agent was not given",
                        tool=self.name,
                    )
                kwargs[param] = secret
        call = self.fn(**kwargs) if self.schema.is_async else asyncio.to_thread(self.fn, **kwargs)
        if self.timeout_s is None:
            return await call
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except TimeoutError as exc:
            raise ToolError(
                f"tool {self.name!r} timed out after {self.timeout_s:g} s", tool=self.name
            ) from exc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        access = "read-only" if self.read_only else "side effects"
        approval = ", approval" if self.requires_approval else ""
        return f"<Tool {self.name} ({access}{approval})>"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    requires_approval: bool = False,
    secrets: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    requires_approval: bool = False,
    secrets: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a :class:`Tool`; use as ``@tool`` or ``@tool(read_only=True, ...)``.

    The JSON schema comes from the signature and the Google-style docstring (summary and ``Args:``).
    Arguments are validated with pydantic before the function runs; invalid ones go back to the
    model as a tool error it can correct.

    Args:
        fn: The function, when used bare as ``@tool``.
        name: The name the model sees (default: the function's name).
        description: What the tool does (default: the docstring's summary).
        read_only: ``True`` when the tool has no side effects. Side-effecting tools (the default)
            run only when the agent is granted them (``Agent(allow=[...])``).
        requires_approval: Ask the agent's approval callback before each call.
        secrets: Parameter name → secret name for ``Secret`` parameters (default: the parameter name).
        timeout_s: Abandon a call after this many seconds.
    """

    def wrap(func: Callable[..., Any]) -> Tool:
        return Tool(
            func,
            name=name,
            description=description,
            read_only=read_only,
            requires_approval=requires_approval,
            secrets=secrets,
            timeout_s=timeout_s,
        )

    return wrap(fn) if fn is not None else wrap


def format_result(value: Any) -> str:
    """A tool's return value as the text the model reads (JSON for structured values)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "(no result)"
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        return json.dumps([v.model_dump(mode="json") for v in value], ensure_ascii=False)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
