"""Decoding OpenAI-shaped replies, shared by the fast path and the litellm provider (same shapes)."""

from __future__ import annotations

import time
from typing import Any

from aiapp.errors import MalformedResponseError
from aiapp.gateway._pricing import PriceTable
from aiapp.types import Completion, FinishReason, StreamChunk, ToolCall

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for decoded JSON, ``obj.name`` for SDK objects (``None`` when absent).

    The fast path decodes the wire's JSON itself while litellm hands back objects; reading both
    through this keeps one decoder for the two.
    """
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def completion_from_openai(response: Any, *, model: str, prices: PriceTable, started: float) -> Completion:
    """Turn an OpenAI chat completion (JSON, the SDK's object or litellm's) into a :class:`Completion`."""
    choices = field(response, "choices")
    if not choices or not isinstance(choices, list | tuple):
        raise MalformedResponseError("reply has no choices", deployment=model)
    choice = choices[0]
    message = field(choice, "message")
    if message is None:
        raise MalformedResponseError("reply's first choice has no message", deployment=model)
    tool_calls = tuple(
        ToolCall(
            id=field(c, "id") or f"call_{i}",
            name=field(field(c, "function"), "name") or "",
            arguments=field(field(c, "function"), "arguments") or "{}",
        )
        for i, c in enumerate(field(message, "tool_calls") or ())
    )
    usage = field(response, "usage")
    return Completion(
        text=field(message, "content") or "",
        tool_calls=tool_calls,
        finish_reason=FINISH_REASONS.get(field(choice, "finish_reason") or "stop", "stop"),
        model=model,
        usage=prices.usage(
            model,
            field(usage, "prompt_tokens") or 0,
            field(usage, "completion_tokens") or 0,
        ),
        latency_ms=(time.perf_counter() - started) * 1000.0,
    )


class StreamAssembler:
    """Accumulates OpenAI stream events: text deltas pass through, tool-call fragments are joined.

    Args:
        model: Name used for pricing.
        prices: Price table.
        approx_prompt_chars: Used to estimate usage when the server sends none.
    """

    def __init__(self, *, model: str, prices: PriceTable, approx_prompt_chars: int) -> None:
        self._model = model
        self._prices = prices
        self._tools: dict[int, dict[str, str]] = {}
        self._finish: FinishReason = "stop"
        self._usage: tuple[int, int] | None = None
        self._chars_out = 0
        self._approx_prompt_tokens = approx_prompt_chars // 4

    def feed(self, event: Any) -> StreamChunk | None:
        """Take one stream event (JSON or an SDK object); return a text chunk to pass on, or ``None``."""
        usage = field(event, "usage")
        if usage is not None:
            self._usage = (field(usage, "prompt_tokens") or 0, field(usage, "completion_tokens") or 0)
        choices = field(event, "choices")
        if not choices:
            return None
        choice = choices[0]
        finish = field(choice, "finish_reason")
        if finish:
            self._finish = FINISH_REASONS.get(finish, "stop")
        delta = field(choice, "delta")
        if delta is None:
            return None
        for call in field(delta, "tool_calls") or ():
            slot = self._tools.setdefault(field(call, "index") or 0, {"id": "", "name": "", "arguments": ""})
            if field(call, "id"):
                slot["id"] = field(call, "id")
            function = field(call, "function")
            if function is not None:
                slot["name"] += field(function, "name") or ""
                slot["arguments"] += field(function, "arguments") or ""
        text = field(delta, "content") or ""
        if not text:
            return None
        self._chars_out += len(text)
        return StreamChunk(delta=text)

    def final(self) -> StreamChunk:
        """The closing chunk: finish reason, assembled tool calls and usage."""
        calls = tuple(
            ToolCall(id=slot["id"] or f"call_{i}", name=slot["name"], arguments=slot["arguments"] or "{}")
            for i, slot in sorted(self._tools.items())
        )
        # Servers that ignore stream_options send no usage; estimate (~4 chars/token) rather than claim 0.
        inp, out = self._usage or (self._approx_prompt_tokens, self._chars_out // 4)
        return StreamChunk(
            tool_calls=calls,
            finish_reason="tool_calls" if calls else self._finish,
            usage=self._prices.usage(self._model, inp, out),
        )
