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


def completion_from_openai(response: Any, *, model: str, prices: PriceTable, started: float) -> Completion:
    """Turn an OpenAI ``ChatCompletion`` (or litellm's ``ModelResponse``) into a :class:`Completion`."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise MalformedResponseError("reply has no choices", deployment=model)
    choice = choices[0]
    message = choice.message
    tool_calls = tuple(
        ToolCall(id=c.id or f"call_{i}", name=c.function.name, arguments=c.function.arguments or "{}")
        for i, c in enumerate(getattr(message, "tool_calls", None) or ())
    )
    usage = getattr(response, "usage", None)
    return Completion(
        text=message.content or "",
        tool_calls=tool_calls,
        finish_reason=FINISH_REASONS.get(choice.finish_reason or "stop", "stop"),
        model=model,
        usage=prices.usage(
            model,
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
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
        """Take one stream event; return a text chunk to pass on, or ``None``."""
        usage = getattr(event, "usage", None)
        if usage is not None:
            self._usage = (usage.prompt_tokens or 0, usage.completion_tokens or 0)
        if not event.choices:
            return None
        choice = event.choices[0]
        if choice.finish_reason:
            self._finish = FINISH_REASONS.get(choice.finish_reason, "stop")
        delta = choice.delta
        for call in getattr(delta, "tool_calls", None) or ():
            slot = self._tools.setdefault(call.index or 0, {"id": "", "name": "", "arguments": ""})
            if call.id:
                slot["id"] = call.id
            if call.function is not None:
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
        text = getattr(delta, "content", None) or ""
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
