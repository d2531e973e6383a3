"""Typed values that cross aiapp's boundaries: messages, tool calls, call options, completions.

Everything here is a pydantic v2 model so that configuration, traces and HTTP payloads validate at
the edge. The shapes follow the OpenAI chat format because every provider we reach (OpenAI, vLLM,
Ollama, litellm's adapters) speaks it.
"""

from __future__ import annotations

import builtins
import json
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "CallOptions",
    "Completion",
    "FinishReason",
    "Hit",
    "Message",
    "ResponseFormat",
    "Retriever",
    "Role",
    "StreamChunk",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "as_messages",
]

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]

_T = TypeVar("_T", bound=BaseModel)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Frozen):
    """A model's request to call a tool. ``arguments`` is the raw JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"

    def parsed_arguments(self) -> dict[str, Any]:
        """Decode ``arguments``; raise :class:`aiapp.errors.OutputParseError` when it is not a JSON object."""
        from aiapp.errors import OutputParseError

        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise OutputParseError(
                f"tool call {self.name!r} has arguments that are not JSON: {exc.msg} at column {exc.colno}",
                raw=self.arguments,
            ) from exc
        if not isinstance(value, dict):
            raise OutputParseError(
                f"tool call {self.name!r} arguments must be a JSON object, got {type(value).__name__}",
                raw=self.arguments,
            )
        return value


class Message(_Frozen):
    """One chat message. ``tool_calls`` only on assistant messages, ``tool_call_id`` only on tool messages."""

    role: Role
    content: str = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message."""
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        """An assistant message, optionally carrying tool calls."""
        return cls(role="assistant", content=content, tool_calls=tool_calls)

    @classmethod
    def tool(cls, content: str, *, tool_call_id: str, name: str | None = None) -> Message:
        """The result of a tool call, sent back to the model."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI wire form of this message."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
            if not self.content:
                out["content"] = None
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class ToolSpec(_Frozen):
    """A tool offered to the model: a name, a description and a JSON schema for its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class ResponseFormat(_Frozen):
    """Ask for JSON output: any JSON object (``json_object``) or one matching ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None
    name: str = "output"

    @classmethod
    def from_model(cls, model: builtins.type[BaseModel]) -> ResponseFormat:
        """A schema-constrained format built from a pydantic model."""
        return cls(type="json_schema", json_schema=model.model_json_schema(), name=model.__name__)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``response_format`` value."""
        if self.type == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": self.name, "schema": self.json_schema or {}},
            }
        return {"type": self.type}


class CallOptions(_Frozen):
    """Generation parameters for one call. ``None`` means "use the provider's default".

    ``extra`` passes provider-specific parameters through untouched.
    """

    temperature: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | None = None
    response_format: ResponseFormat | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    extra: dict[str, Any] = Field(default_factory=dict)

    def merged(self, other: CallOptions | None) -> CallOptions:
        """These options overlaid by the fields set explicitly on ``other``."""
        if other is None:
            return self
        data = self.model_dump(exclude_unset=True)
        data.update(other.model_dump(exclude_unset=True))
        if self.extra or other.extra:
            data["extra"] = {**self.extra, **other.extra}
        return CallOptions.model_validate(data)

    def to_openai(self) -> dict[str, Any]:
        """Keyword arguments for an OpenAI-compatible chat completion request."""
        out: dict[str, Any] = {}
        for key in ("temperature", "max_tokens", "top_p", "seed", "tool_choice"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.stop:
            out["stop"] = list(self.stop)
        if self.tools:
            out["tools"] = [t.to_openai() for t in self.tools]
        if self.response_format is not None and self.response_format.type != "text":
            out["response_format"] = self.response_format.to_openai()
        out.update(self.extra)
        return out


class Usage(_Frozen):
    """Token counts for one call and what it cost.

    ``cost_usd`` is ``None`` when no price is known for the model: unknown, never a silent zero.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class Completion(_Frozen):
    """A model's reply with its usage, and — when it came through the gateway — where it went.

    ``route``, ``deployment``, ``attempts`` and ``trace_id`` are filled by the gateway. It is
    immutable: a layer that adds to a reply returns ``completion.model_copy(update={...})``.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float = 0.0
    route: str | None = None
    deployment: str | None = None
    attempts: int = 1
    tried: tuple[str, ...] = ()
    cache_hit: bool = False
    trace_id: str | None = None

    def message(self) -> Message:
        """This reply as an assistant message, ready to append to a conversation."""
        return Message.assistant(self.text, tool_calls=self.tool_calls)

    def json_data(self) -> Any:
        """Decode ``text`` as JSON (a code fence is stripped); errors carry the raw reply."""
        from aiapp.errors import OutputParseError

        raw = _strip_code_fence(self.text)
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise OutputParseError(
                f"model reply is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                raw=self.text,
            ) from exc

    def parse(self, model: type[_T]) -> _T:
        """Validate the JSON reply against a pydantic model; errors carry the raw reply."""
        from aiapp.errors import OutputParseError

        data = self.json_data()
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
            )
            raise OutputParseError(
                f"model reply does not match {model.__name__}: {problems}", raw=self.text
            ) from exc


class StreamChunk(_Frozen):
    """One piece of a streamed reply. The last chunk carries ``finish_reason``, tool calls and usage."""

    delta: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


class Hit(BaseModel):
    """One retrieved chunk: what the retrieval layer returns and what RAG prompts cite.

    Attributes:
        text: The chunk's text.
        score: Relevance score (higher is better; comparable only within one search).
        source: The document's path relative to its corpus root (or another stable document id).
        chunk_id: Stable id: source path + content hash.
        doc_id: The document id (defaults to ``source``).
        corpus_version: Hash of the corpus manifest the hit came from.
        title: Document title, when known.
        metadata: Anything else (headings, tags, modified time ...).
    """

    model_config = ConfigDict(extra="forbid")

    text: str
    score: float = 0.0
    source: str = ""
    chunk_id: str = ""
    doc_id: str = ""
    corpus_version: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class Retriever(Protocol):
    """Anything that can search: an aiapp index, a remote search API, a test double."""

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        """The ``k`` best hits for ``query``, best first."""
        ...


def _strip_code_fence(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        body = stripped[3:-3]
        first_newline = body.find("\n")
        if first_newline != -1 and body[:first_newline].strip().isalpha():
            body = body[first_newline + 1 :]
        return body.strip()
    return stripped


def as_messages(prompt: str | Message | list[Message] | tuple[Message, ...]) -> list[Message]:
    """Accept a bare string, one message or a list of messages; always return a list of messages."""
    if isinstance(prompt, str):
        return [Message.user(prompt)]
    if isinstance(prompt, Message):
        return [prompt]
    return list(prompt)
