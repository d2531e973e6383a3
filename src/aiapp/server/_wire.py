"""The OpenAI wire format: requests in, completions, stream chunks and errors out.

Requests are validated with pydantic at the edge; a bad one becomes a 400 whose ``param`` names the
field (``messages[1].role``). Replies are written as bytes with pydantic-core's JSON encoder.
"""

from __future__ import annotations

import base64
import math
import time
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json, to_json

from aiapp.errors import (
    AiappError,
    AllDeploymentsFailedError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    CircuitOpenError,
    ConfigError,
    GuardrailError,
    InputError,
    LimitExceededError,
    ModelNotFoundError,
    OutputParseError,
    ProviderCallBlockedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    UserError,
)
from aiapp.types import CallOptions, Completion, Message, ResponseFormat, StreamChunk, ToolCall, ToolSpec

_T = TypeVar("_T", bound=BaseModel)

#: OpenAI parameters passed through to the provider untouched (``CallOptions.extra``).
PASSTHROUGH = frozenset(
    {"presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "parallel_tool_calls"}
)
#: OpenAI parameters accepted and not forwarded (they do not change the reply).
IGNORED = frozenset({"user", "store", "metadata", "service_tier"})


class WireError(Exception):
    """An error to answer in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> bytes:
        """The JSON body."""
        return to_json(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )

    def headers(self) -> dict[str, str]:
        """``Retry-After`` (whole seconds, rounded up) when there is a wait to tell."""
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


# -- requests -----------------------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Function(_Wire):
    name: str = Field(min_length=1)
    arguments: str = "{}"


class _ToolCall(_Wire):
    id: str
    type: Literal["function"] = "function"
    function: _Function


class _ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _Message(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_ContentPart] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None


class _FunctionSpec(_Wire):
    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class _Tool(_Wire):
    type: Literal["function"] = "function"
    function: _FunctionSpec


class _StreamOptions(_Wire):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions`` (the subset aiapp serves)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    tools: list[_Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class EmbeddingsRequest(_Wire):
    """The body of ``POST /v1/embeddings``."""

    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def parse_json(raw: bytes) -> dict[str, Any]:
    """Decode a request body; a 400 for anything but a JSON object."""
    try:
        value = from_json(raw)
    except ValueError as exc:
        raise WireError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise WireError(400, f"request body must be a JSON object, got {type(value).__name__}")
    return value


def validate(model: type[_T], data: dict[str, Any]) -> _T:
    """Validate ``data``; the first problem becomes a 400 naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise WireError(400, f"{param or 'body'}: {first['msg']}{more}", param=param or None) from exc


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[_ContentPart]", "list[str]", "dict[str,any]") or "[" in str(part):
            continue  # a union member pydantic tried, not a field
        else:
            out += f".{part}" if out else str(part)
    return out


def to_messages(request: ChatRequest) -> list[Message]:
    """The request's messages as aiapp messages (``developer`` is a system message)."""
    out = []
    for i, m in enumerate(request.messages):
        where = f"messages[{i}]"
        if m.role == "tool" and not m.tool_call_id:
            raise WireError(
                400, f"{where}.tool_call_id: required on a tool message", param=f"{where}.tool_call_id"
            )
        if m.tool_calls and m.role != "assistant":
            raise WireError(
                400,
                f"{where}.tool_calls: only assistant messages carry tool calls",
                param=f"{where}.tool_calls",
            )
        if m.content is None and m.role != "assistant":
            raise WireError(400, f"{where}.content: required on a {m.role} message", param=f"{where}.content")
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in m.tool_calls or ()
        )
        out.append(
            Message(
                role="system" if m.role == "developer" else m.role,
                content=_text(m.content, where),
                name=m.name,
                tool_calls=calls,
                tool_call_id=m.tool_call_id,
            )
        )
    return out


def _text(content: str | list[_ContentPart] | None, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            param = f"{where}.content[{j}].type"
            raise WireError(400, f"{param}: only text parts are supported, got {part.type!r}", param=param)
        texts.append(part.text)
    return "".join(texts)


def to_options(request: ChatRequest) -> CallOptions:
    """The request's generation parameters as :class:`CallOptions`."""
    extras = request.model_extra or {}
    unknown = sorted(set(extras) - PASSTHROUGH - IGNORED)
    if unknown:
        raise WireError(
            400, f"{unknown[0]}: unsupported parameter", param=unknown[0], code="unsupported_parameter"
        )
    data: dict[str, Any] = {}
    for key in ("temperature", "top_p", "seed"):
        value = getattr(request, key)
        if value is not None:
            data[key] = value
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens is not None:
        data["max_tokens"] = max_tokens
    if request.stop is not None:
        data["stop"] = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop)
    if request.tools:
        data["tools"] = tuple(
            ToolSpec(
                name=t.function.name, description=t.function.description, parameters=t.function.parameters
            )
            for t in request.tools
        )
    extra = {k: v for k, v in extras.items() if k in PASSTHROUGH}
    if isinstance(request.tool_choice, str):
        data["tool_choice"] = request.tool_choice
    elif request.tool_choice is not None:
        extra["tool_choice"] = request.tool_choice  # {"type": "function", "function": {"name": ...}}
    if request.response_format is not None:
        data["response_format"] = _response_format(request.response_format)
    if extra:
        data["extra"] = extra
    return CallOptions(**data)


def _response_format(value: dict[str, Any]) -> ResponseFormat | None:
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise WireError(
                400,
                "response_format.json_schema: an object with a 'schema' object is required",
                param="response_format.json_schema",
            )
        return ResponseFormat(
            type="json_schema", json_schema=spec.get("schema") or {}, name=str(spec.get("name", "output"))
        )
    raise WireError(
        400,
        f"response_format.type: expected 'text', 'json_object' or 'json_schema', got {kind!r}",
        param="response_format.type",
    )


# -- replies ------------------------------------------------------------------------------------


def _tool_calls(calls: tuple[ToolCall, ...], *, indexed: bool) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        entry: dict[str, Any] = {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        if indexed:
            entry = {"index": i, **entry}
        out.append(entry)
    return out


def _finish(reason: str | None) -> str | None:
    return "stop" if reason == "error" else reason


def completion_json(completion: Completion, *, model: str, request_id: str) -> bytes:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if completion.tool_calls:
        message["tool_calls"] = _tool_calls(completion.tool_calls, indexed=False)
        message["content"] = completion.text or None
    usage = completion.usage
    return to_json(
        {
            "id": f"chatcmpl-{completion.trace_id or request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": _finish(completion.finish_reason),
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
        }
    )


class ChunkWriter:
    """Turns a stream of :class:`StreamChunk` into SSE ``data:`` lines of ``chat.completion.chunk``."""

    def __init__(self, *, model: str, stream_id: str, include_usage: bool) -> None:
        self.model = model
        self.id = f"chatcmpl-{stream_id}"
        self.created = int(time.time())
        self.include_usage = include_usage
        self.usage: StreamChunk | None = None
        self._started = False
        # The fields every event repeats, encoded once: each event encodes only its choices.
        head = to_json({"id": self.id, "object": "chat.completion.chunk", "created": self.created})
        self._head = b"data: " + head[:-1] + b',"model":' + to_json(model) + b',"choices":'

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        out = self._head + to_json(choices)
        for key, value in extra.items():
            out += b"," + to_json(key) + b":" + to_json(value)
        return out + b"}\n\n"

    def chunk(self, chunk: StreamChunk) -> bytes:
        """The events for one chunk (the first also carries the assistant role)."""
        delta: dict[str, Any] = {}
        if not self._started:
            delta["role"] = "assistant"
            self._started = True
        if chunk.delta or "role" in delta:
            delta["content"] = chunk.delta
        if chunk.tool_calls:
            delta["tool_calls"] = _tool_calls(chunk.tool_calls, indexed=True)
        if chunk.usage is not None:
            self.usage = chunk
        out = b""
        if delta:
            out += self._event([{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}])
        if chunk.finish_reason is not None:
            out += self._event(
                [{"index": 0, "delta": {}, "finish_reason": _finish(chunk.finish_reason), "logprobs": None}]
            )
        return out

    def end(self) -> bytes:
        """The usage chunk (when asked for) and ``[DONE]``."""
        out = b""
        if self.include_usage:
            usage = self.usage.usage if self.usage is not None and self.usage.usage is not None else None
            out += self._event(
                [],
                usage={
                    "prompt_tokens": usage.input_tokens if usage else 0,
                    "completion_tokens": usage.output_tokens if usage else 0,
                    "total_tokens": usage.total_tokens if usage else 0,
                },
            )
        return out + b"data: [DONE]\n\n"


def error_event(error: WireError) -> bytes:
    """An error inside a stream that already started: one ``data:`` line, then ``[DONE]``."""
    return b"data: " + error.body() + b"\n\ndata: [DONE]\n\n"


def embeddings_json(vectors: Any, *, model: str, encoding: str, tokens: int) -> bytes:
    """A ``list`` of ``embedding`` objects (floats, or base64 little-endian float32 as OpenAI sends)."""
    data = []
    for i, row in enumerate(vectors):
        value: Any = (
            base64.b64encode(row.astype("<f4").tobytes()).decode() if encoding == "base64" else row.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    return to_json(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


# -- errors -------------------------------------------------------------------------------------


def wire_error(exc: BaseException) -> WireError:
    """The OpenAI-shaped error (and HTTP status) for an exception raised while serving a call."""
    if isinstance(exc, WireError):
        return exc
    if isinstance(exc, TimeoutError):
        return WireError(
            504, "the request took longer than the server's timeout", type="timeout", code="timeout"
        )
    if isinstance(exc, BudgetExceededError):
        return WireError(402, str(exc), type="insufficient_quota", code="budget_exceeded")
    if isinstance(exc, GuardrailError):
        return WireError(400, str(exc), code="content_blocked")
    if isinstance(exc, ConfigError) and backend_down(exc):
        return WireError(
            503,
            f"a shared store this server needs is unreachable: {exc}",
            type="service_unavailable",
            code="redis_unavailable",
            retry_after=1.0,
        )
    if isinstance(exc, ConfigError) and exc.field == "routes":  # no such route
        return WireError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, ConfigError):  # the server's own config is wrong, not the request
        return WireError(
            500, f"the server is misconfigured: {exc}", type="server_error", code="server_misconfigured"
        )
    if isinstance(exc, UserError | InputError):
        return WireError(400, str(exc))
    if isinstance(exc, OutputParseError):
        return WireError(502, str(exc), type="upstream_error", code="malformed_response")
    if isinstance(exc, ProviderError):
        return _provider_error(exc)
    if isinstance(exc, AiappError):
        return WireError(500, str(exc), type="server_error")
    return WireError(500, f"internal error: {type(exc).__name__}", type="server_error")


def backend_down(exc: ConfigError) -> bool:
    """Whether ``exc`` reports Redis (keys, limits, budgets, cache) not answering, not a wrong config.

    The stores raise ``ConfigError(field="redis_url")`` from the connection or timeout error that
    made them give up; a missing ``redis`` package has an ``ImportError`` cause and stays a config error.
    """
    cause = exc.__cause__
    return exc.field == "redis_url" and cause is not None and not isinstance(cause, ImportError)


def _provider_error(exc: ProviderError) -> WireError:
    message = str(exc)
    kind: ProviderError = exc
    if isinstance(exc, AllDeploymentsFailedError) and exc.failures:
        errors = [f.error for f in exc.failures]
        if all(isinstance(e, CircuitOpenError | RateLimitError) for e in errors):
            waits = [w for e in errors if (w := getattr(e, "retry_after", None)) is not None]
            kind = CircuitOpenError(message, retry_after=min(waits) if waits else None)
        else:
            kind = next((e for e in reversed(errors) if not isinstance(e, CircuitOpenError)), errors[-1])
    if isinstance(kind, LimitExceededError):
        return WireError(
            429, message, type="rate_limit_error", code="rate_limit_exceeded", retry_after=kind.retry_after
        )
    if isinstance(kind, RateLimitError):
        return WireError(
            429, message, type="rate_limit_error", code="upstream_rate_limited", retry_after=kind.retry_after
        )
    if isinstance(kind, CircuitOpenError):
        return WireError(
            503, message, type="upstream_unavailable", code="circuit_open", retry_after=kind.retry_after
        )
    if isinstance(kind, ProviderTimeoutError):
        return WireError(504, message, type="upstream_timeout", code="upstream_timeout")
    if isinstance(kind, ProviderCallBlockedError):
        return WireError(503, message, type="upstream_unavailable", code="provider_calls_blocked")
    if isinstance(kind, ModelNotFoundError | AuthenticationError):
        return WireError(502, message, type="upstream_error", code="upstream_misconfigured")
    if isinstance(kind, BadRequestError):
        return WireError(400, message, code="upstream_rejected")
    return WireError(502, message, type="upstream_error", code="upstream_failed")
