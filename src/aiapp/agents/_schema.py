"""From a Python function to a tool's JSON schema and argument validator.

The schema comes from the signature (types, defaults) and a Google-style docstring (the summary
becomes the tool's description, the ``Args:`` entries the parameters' descriptions). Parameters the
runtime injects — a :class:`~aiapp.agents.Secret` or the :class:`~aiapp.agents.ToolContext` — are left
out of the schema: the model never sees them, and never gets to fill them.

The validator is a pydantic model built with :func:`pydantic.create_model`; it forbids unknown
arguments, so a model that invents one is told so and can correct itself.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from aiapp.errors import InputError

_SECTION_RE = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns|Return|Yields|Raises|Example|Examples|Note|Notes"
    r"|Attributes|Warning|Warnings|See Also|Todo)\s*:\s*$"
)
_ARG_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


@dataclass(frozen=True)
class Docstring:
    """A parsed Google-style docstring.

    Attributes:
        summary: The text before the first section (the tool's description).
        args: Parameter name → description, from the ``Args:`` section.
    """

    summary: str
    args: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> Docstring:
    """Split a Google-style docstring into its summary and ``Args:`` descriptions.

    Args:
        doc: The raw docstring (``None`` for none).

    Returns:
        The summary (paragraphs before the first section, joined) and the argument descriptions.
    """
    if not doc:
        return Docstring("")
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        match = _SECTION_RE.match(stripped) if not line.startswith((" ", "\t")) else None
        if match:
            section, current, arg_indent = match.group(1), None, None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in ("Args", "Arguments", "Parameters", "Params") or not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        arg = _ARG_RE.match(stripped)
        if arg and (arg_indent is None or indent <= arg_indent):
            arg_indent = indent
            current = arg.group(1)
            args[current] = arg.group(3).strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    paragraphs = re.split(r"\n\s*\n", "\n".join(summary).strip())
    text = "\n\n".join(" ".join(part.split()) for part in paragraphs if part.strip())
    return Docstring(text, args)


@dataclass(frozen=True)
class FunctionSchema:
    """What the runtime needs to call a function as a tool.

    Attributes:
        description: The tool's description (docstring summary unless given).
        model: The pydantic model validating the arguments the model supplies.
        parameters: The JSON schema of those arguments (OpenAI ``parameters``).
        injected: Parameter name → what the runtime injects (``"context"`` or ``"secret"``).
        is_async: Whether the function is a coroutine function.
    """

    description: str
    model: type[BaseModel]
    parameters: dict[str, Any]
    injected: dict[str, str]
    is_async: bool


def function_schema(
    fn: Callable[..., Any],
    *,
    name: str,
    description: str | None,
    injected_types: dict[type, str],
) -> FunctionSchema:
    """Build the argument model and JSON schema of ``fn``.

    Args:
        fn: The function (sync or async).
        name: The tool name (names the argument model and errors).
        description: Overrides the docstring summary.
        injected_types: Annotation type → injection kind; such parameters are left out of the schema.

    Raises:
        InputError: for ``*args``/``**kwargs``, positional-only parameters or unresolvable annotations.
    """
    where = f"tool {name!r} ({getattr(fn, '__qualname__', fn)!r})"
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as exc:
        raise InputError(f"{where}: cannot resolve the type annotations: {exc}") from exc
    doc = parse_docstring(inspect.getdoc(fn))
    fields: dict[str, Any] = {}
    injected: dict[str, str] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InputError(
                f"{where}: *args and **kwargs cannot be described to a model; name each argument"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise InputError(f"{where}: positional-only parameter {param.name!r} is not supported")
        annotation = hints.get(param.name, Any)
        kind = _injected_kind(annotation, injected_types)
        if kind is not None:
            injected[param.name] = kind
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, Field(default, description=doc.args.get(param.name)))
    unknown = sorted(set(doc.args) - set(fields) - set(injected))
    if unknown:
        raise InputError(f"{where}: the docstring describes arguments the function does not take: {unknown}")
    model = create_model(
        f"{_camel(name)}Args", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False), **fields
    )
    try:
        schema = model.model_json_schema()
    except Exception as exc:  # pydantic raises several types for unsupported annotations
        raise InputError(f"{where}: an argument's type has no JSON schema: {exc}") from exc
    return FunctionSchema(
        description=description if description is not None else doc.summary,
        model=model,
        parameters=_tidy(schema),
        injected=injected,
        is_async=inspect.iscoroutinefunction(fn),
    )


def _injected_kind(annotation: Any, injected_types: dict[type, str]) -> str | None:
    candidates = [annotation]
    if typing.get_origin(annotation) is typing.Annotated:
        candidates.append(typing.get_args(annotation)[0])
    candidates.extend(a for c in list(candidates) for a in typing.get_args(c) if a is not type(None))
    for candidate in candidates:
        if isinstance(candidate, type) and candidate in injected_types:
            return injected_types[candidate]
    return None


def _tidy(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's ``title`` noise; keep ``$defs``, descriptions, defaults and constraints."""
    out = {k: v for k, v in schema.items() if k != "title"}
    out["properties"] = {
        name: {k: v for k, v in prop.items() if k != "title"}
        for name, prop in out.get("properties", {}).items()
    }
    out.setdefault("required", [])
    return out


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part) or "Tool"
