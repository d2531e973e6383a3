"""The prompt file schema (``prompts/<name>/v<N>.yaml``) and :class:`Prompt`, a loaded version.

A prompt file, every key validated (an unknown key is an error naming the file and line)::

    name: support_answer                 # must match the directory
    version: 2                           # must match the file name (v2.yaml)
    description: Answer a support question from the retrieved docs, citing them.
    model: local                         # default route (or provider/model); callers may override
    params: {temperature: 0.2, max_tokens: 400}   # any aiapp.types.CallOptions field
    variables:
      question: {type: string, description: The user's question}
      context: {type: string}
      no_answer: {type: string, default: "I could not find an answer to that in the provided context."}
    messages:
      - role: system
        content: |
          Answer from the documents only ...
      - role: user
        content: |
          <context>
          {{ context }}
          </context>
          <question>{{ question }}</question>
    output: {type: text}                 # or {type: json, schema: {...JSON schema...}}
    examples:                            # few-shot pairs, also rendered by `aiapp prompts check`
      - vars: {question: ..., context: ...}
        output: ...

Templates are Jinja2, rendered in a sandbox with strict undefined variables (see ``_render``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from aiapp.errors import PromptError
from aiapp.types import CallOptions, Message, ResponseFormat

if TYPE_CHECKING:
    from aiapp.gateway import PromptRef
    from aiapp.prompts._render import Template

__all__ = ["Example", "OutputSpec", "Prompt", "PromptMessage", "RenderLimits", "Variable", "VariableType"]

VariableType = Literal["string", "integer", "number", "boolean", "list", "object", "any"]

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
"""Prompt names: letters, digits, ``_``, ``-`` and ``.``; no ``@`` or ``/`` (they separate references)."""

_SAMPLES: dict[str, Any] = {"string": "sample text", "integer": 1, "number": 1.5, "boolean": True}


@dataclass(frozen=True)
class RenderLimits:
    """What one render of one template may cost; exceeding a limit is a :class:`PromptError`.

    Attributes:
        max_output_chars: The longest rendered text (1 MB of text by default).
        max_loop_iterations: Total ``{% for %}`` iterations per render, all loops together.
        max_seconds: Wall time per render, checked cooperatively (on loop iterations, calls and
            output), so a single huge filter call is not interrupted mid-way.
    """

    max_output_chars: int = 1_000_000
    max_loop_iterations: int = 100_000
    max_seconds: float = 2.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variable(_Strict):
    """A declared template variable.

    Attributes:
        type: The value's type; values passed to :meth:`Prompt.render` are checked against it.
        required: Whether a value must be passed (a variable with a default never is).
        default: Used when no value is passed.
        description: What the variable holds, for people editing the prompt.
        sample: A value ``aiapp prompts check`` renders with (defaults to the default, or a
            placeholder for scalar types).
    """

    type: VariableType = "string"
    required: bool = True
    default: Any = None
    description: str = ""
    sample: Any = None

    @model_validator(mode="after")
    def _typed_values(self) -> Variable:
        for field in ("default", "sample"):
            value = getattr(self, field)
            if value is not None and not _is_type(value, self.type):
                raise ValueError(f"{field} {value!r} is not of type {self.type}")
        return self

    @property
    def is_required(self) -> bool:
        """Required and without a default."""
        return self.required and self.default is None

    def sample_value(self) -> Any:
        """A value to render with when checking the template (``None`` when there is none)."""
        if self.sample is not None:
            return self.sample
        if self.default is not None:
            return self.default
        return _SAMPLES.get(self.type)


class PromptMessage(_Strict):
    """One message template: a role and Jinja2 content."""

    role: Literal["system", "user", "assistant"]
    content: str


class OutputSpec(_Strict):
    """What the reply must be: free ``text``, or ``json`` (optionally matching a JSON schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["text", "json"] = "text"
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _schema_needs_json(self) -> OutputSpec:
        if self.json_schema is not None and self.type != "json":
            raise ValueError("a schema needs type: json")
        if self.json_schema is not None:
            from aiapp.prompts._schema import schema_problem

            problem = schema_problem(self.json_schema)
            if problem:
                raise ValueError(f"invalid JSON schema: {problem}")
        return self


class Example(_Strict):
    """A few-shot example: variables for the prompt's user/assistant templates and the reply to show."""

    vars: dict[str, Any] = Field(default_factory=dict)
    output: Any


class Prompt(_Strict):
    """One version of a prompt, as loaded from ``prompts/<name>/v<N>.yaml`` (or built in code).

    Render it with :meth:`render`; hand :meth:`prompt_ref` to the gateway so traces record
    ``name@vN`` and :attr:`content_hash`.

    Example:
        >>> prompt = Prompt(name="greet", version=1, variables={"who": Variable()},
        ...                 messages=[PromptMessage(role="user", content="Say hello to {{ who }}.")])
        >>> prompt.render(who="Ada")[0].content
        'Say hello to Ada.'
    """

    name: str = Field(pattern=f"^{NAME_PATTERN}$")
    version: int = Field(ge=1)
    description: str = ""
    model: str | None = None
    params: CallOptions = Field(default_factory=CallOptions)
    variables: dict[str, Variable] = Field(default_factory=dict)
    messages: list[PromptMessage] = Field(min_length=1)
    output: OutputSpec = Field(default_factory=OutputSpec)
    examples: list[Example] = Field(default_factory=list)

    _path: str | None = PrivateAttr(default=None)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
    _source: str | None = PrivateAttr(default=None)
    _templates: list[Template] | None = PrivateAttr(default=None)
    _render_limits: RenderLimits | None = PrivateAttr(default=None)
    _hash: str | None = PrivateAttr(default=None)

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, variables: dict[str, Variable]) -> dict[str, Variable]:
        for name in variables:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name.startswith("_"):
                raise ValueError(f"variable name {name!r} must be an identifier not starting with '_'")
        return variables

    # -- identity --------------------------------------------------------------------------------

    @property
    def ref(self) -> str:
        """``name@vN``."""
        return f"{self.name}@v{self.version}"

    @property
    def route(self) -> str | None:
        """The default route (the file's ``model:`` key: a route name or ``provider/model``)."""
        return self.model

    @property
    def path(self) -> str | None:
        """The file this version was loaded from (``None`` when built in code)."""
        return self._path

    @property
    def source(self) -> str | None:
        """The file's text as loaded (``None`` when built in code)."""
        return self._source

    @property
    def content_hash(self) -> str:
        """A short hash of the version's validated content: every key, but not comments or formatting."""
        if self._hash is None:
            payload = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True).encode()
            self._hash = hashlib.sha256(payload).hexdigest()[:16]
        return self._hash

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Prompt:
        """A copy; with ``update``, the cached hash and compiled templates are recomputed."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._hash = None
            copy._templates = None
        return copy

    def prompt_ref(self) -> PromptRef:
        """The :class:`aiapp.gateway.PromptRef` to pass to ``Gateway.complete(prompt_ref=...)``."""
        from aiapp.gateway import PromptRef

        return PromptRef(ref=self.ref, hash=self.content_hash)

    def line_of(self, *loc: str | int) -> int | None:
        """The file line of a field path (``line_of("variables", "question")``), when known."""
        parts = [str(p) for p in loc]
        while parts:
            line = self._lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return None

    # -- rendering -------------------------------------------------------------------------------

    def templates(self) -> list[Template]:
        """The compiled message templates, in order (compiled once, on first use).

        Raises:
            PromptError: a template has a syntax error.
        """
        if self._templates is None:
            from aiapp.prompts._render import Template

            self._templates = [
                Template(
                    message.content,
                    path=self._where(),
                    first_line=self._content_line(i),
                    label=f"messages[{i}] ({message.role})",
                    limits=self._render_limits,
                )
                for i, message in enumerate(self.messages)
            ]
        return self._templates

    def render(self, variables: Mapping[str, Any] | None = None, /, **values: Any) -> list[Message]:
        """Render the messages with ``variables`` (a mapping, keyword arguments, or both).

        Defaults fill variables not passed. Few-shot :attr:`examples` render as user/assistant turns
        right after the leading system messages: the prompt's user templates rendered with the
        example's variables, then the example's output as the assistant's reply.

        Raises:
            PromptError: a required variable is missing, a variable is not declared or has the wrong
                type, or the template fails in the sandbox — naming the file and line.
        """
        bound = self.bind({**(variables or {}), **values})
        templates = self.templates()
        lead = 0
        while lead < len(self.messages) and self.messages[lead].role == "system":
            lead += 1
        out = [
            Message(role=m.role, content=t.render(bound))
            for m, t in zip(self.messages, templates, strict=True)
        ]
        shots: list[Message] = []
        for i, example in enumerate(self.examples):
            example_vars = self.bind(example.vars, where=f"examples[{i}]")
            for message, template in zip(self.messages[lead:], templates[lead:], strict=True):
                if message.role == "user":
                    shots.append(Message.user(template.render(example_vars)))
            shots.append(Message.assistant(example_output_text(example.output)))
        return out[:lead] + shots + out[lead:]

    def bind(self, values: Mapping[str, Any], *, where: str = "variables") -> dict[str, Any]:
        """Check ``values`` against the declared variables and fill defaults.

        Raises:
            PromptError: an undeclared name, a missing required variable or a value of the wrong type.
        """
        unknown = sorted(set(values) - set(self.variables))
        if unknown:
            declared = ", ".join(sorted(self.variables)) or "none"
            raise self.error(f"{where}: unknown variable {unknown[0]!r} (declared: {declared})")
        bound: dict[str, Any] = {}
        for name, spec in self.variables.items():
            value = values.get(name)
            if value is None:
                if spec.is_required:
                    raise self.error(
                        f"{where}: missing required variable {name!r}", line=self.line_of("variables", name)
                    )
                value = spec.default
            elif not _is_type(value, spec.type):
                raise self.error(
                    f"{where}: variable {name!r} must be {spec.type}, got {type(value).__name__}",
                    line=self.line_of("variables", name),
                )
            bound[name] = value
        return bound

    def call_options(self, options: CallOptions | None = None) -> CallOptions:
        """The prompt's ``params`` (plus a JSON response format when it declares JSON output),
        overlaid by ``options``."""
        base = self.params
        if self.output.type == "json" and base.response_format is None:
            fmt = (
                ResponseFormat(type="json_schema", json_schema=self.output.json_schema, name=self.name)
                if self.output.json_schema is not None
                else ResponseFormat(type="json_object")
            )
            base = base.merged(CallOptions(response_format=fmt))
        return base.merged(options)

    def error(self, message: str, *, line: int | None = None) -> PromptError:
        """A :class:`PromptError` naming this prompt's file (or ``name@vN`` when built in code)."""
        return PromptError(message, path=self._where(), line=line)

    def _where(self) -> str:
        return self._path or f"<prompt {self.ref}>"

    def _content_line(self, index: int) -> int | None:
        """The file line of message ``index``'s first template line (block scalars start a line below)."""
        line = self.line_of("messages", index, "content")
        if line is None or self._source is None or not self._lines.get(f"messages.{index}.content"):
            return line
        lines = self._source.splitlines()
        if 0 < line <= len(lines) and re.search(r":\s*[|>][-+0-9]*\s*(#.*)?$", lines[line - 1]):
            return line + 1
        return line

    def _attach(
        self, *, path: str, lines: dict[str, int], source: str, limits: RenderLimits | None = None
    ) -> Prompt:
        """Record where this prompt came from and its render limits (used by the registry)."""
        self._path = path
        self._lines = lines
        self._source = source
        self._render_limits = limits
        self._templates = None
        return self


def example_output_text(output: Any) -> str:
    """An example's output as the assistant would write it: strings as is, anything else as JSON."""
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list | tuple)
    return isinstance(value, dict)
