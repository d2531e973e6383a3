"""A scripted :class:`~aiapp.gateway._model.Model` for unit tests: queue replies, then assert on calls."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from aiapp.gateway._model import Model, ModelInfo, completion_to_chunks
from aiapp.types import CallOptions, Completion, Message, StreamChunk, ToolCall, Usage

FakeReply: TypeAlias = (
    str | Completion | Message | list[ToolCall] | tuple[ToolCall, ...] | BaseException | type[BaseException]
)
"""What a scripted response may be, once any callable has been applied."""

FakeResponse: TypeAlias = FakeReply | Callable[[list[Message], CallOptions], FakeReply]
"""A queued response: a reply, or a function of ``(messages, options)`` that returns one."""


@dataclass(frozen=True)
class FakeCall:
    """One recorded call to a :class:`FakeModel`.

    Attributes:
        messages: The messages the model was called with, as a list.
        options: The call options (an empty :class:`CallOptions` when none were passed).
    """

    messages: list[Message]
    options: CallOptions

    @property
    def last_user_text(self) -> str:
        """The content of the last user message, or ``""`` when there is none."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


class FakeModel(Model):
    """A model that replies from a queue, one response per call, and records every call.

    Each call to :meth:`complete`, :meth:`acomplete`, :meth:`stream` or :meth:`astream` takes the next
    queued response. A response may be:

    - a ``str``: a text reply (``finish_reason="stop"``);
    - a :class:`Completion`: returned as is (its ``model`` is filled in when empty);
    - a :class:`Message`: its text and tool calls become the reply;
    - a list or tuple of :class:`ToolCall`: a tool-call reply (``finish_reason="tool_calls"``);
    - an exception instance (or class): raised;
    - a callable ``(messages, options) -> any of the above``: called with the request.

    Usage counts whitespace-separated words: input over all message contents, output over the reply
    text and tool-call arguments; ``cost_usd`` is ``0.0``. Streams are the reply split into words, the
    last chunk carrying ``finish_reason``, tool calls and usage. For streams, the response is taken and
    the call recorded when iteration starts.

    Example:
        >>> fake = FakeModel(["hello there", [ToolCall(id="1", name="search", arguments="{}")]])
        >>> fake.complete([Message.user("hi")]).text
        'hello there'
        >>> fake.complete([Message.user("find it")]).finish_reason
        'tool_calls'

    Args:
        responses: Responses to queue, consumed in order.
        name: The model's name, reported in completions.
        default: Response used when the queue is empty; without it an empty queue raises ``RuntimeError``.
        info: Capabilities to advertise.
    """

    def __init__(
        self,
        responses: Iterable[FakeResponse] = (),
        *,
        name: str = "fake/model",
        default: FakeResponse | None = None,
        info: ModelInfo = ModelInfo(),  # noqa: B008 - frozen dataclass, safe as a default
    ) -> None:
        self.name = name
        self.info = info
        self.default = default
        self.calls: list[FakeCall] = []
        self._queue: deque[FakeResponse] = deque(responses)
        self._lock = threading.Lock()

    # -- scripting and inspection -------------------------------------------------------------

    def push(self, *responses: FakeResponse) -> FakeModel:
        """Append responses to the queue; returns ``self`` so calls can chain."""
        with self._lock:
            self._queue.extend(responses)
        return self

    @property
    def pending(self) -> int:
        """How many queued responses are left."""
        with self._lock:
            return len(self._queue)

    @property
    def call_count(self) -> int:
        """How many calls have been made."""
        with self._lock:
            return len(self.calls)

    @property
    def last_call(self) -> FakeCall:
        """The most recent call; ``RuntimeError`` if there has been none."""
        with self._lock:
            if not self.calls:
                raise RuntimeError(f"FakeModel {self.name!r} has not been called")
            return self.calls[-1]

    @property
    def last_messages(self) -> list[Message]:
        """The messages of the most recent call; ``RuntimeError`` if there has been none."""
        return self.last_call.messages

    def reset(self) -> None:
        """Forget recorded calls and drop any queued responses."""
        with self._lock:
            self.calls.clear()
            self._queue.clear()

    # -- the Model interface ------------------------------------------------------------------

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Take the next response and return it as a completion (or raise it).

        Yields to the event loop once, like a real network call would.
        """
        await asyncio.sleep(0)
        return self._next(messages, options)

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream the next response word by word, yielding to the event loop between chunks."""
        completion = self._next(messages, options)
        for chunk in completion_to_chunks(completion):
            await asyncio.sleep(0)
            yield chunk

    # -- internals ----------------------------------------------------------------------------

    def _next(self, messages: Sequence[Message], options: CallOptions | None) -> Completion:
        call = FakeCall(messages=list(messages), options=options if options is not None else CallOptions())
        with self._lock:
            self.calls.append(call)
            made = len(self.calls)
            if self._queue:
                response: FakeResponse | None = self._queue.popleft()
            else:
                response = self.default
        if response is None:
            raise RuntimeError(f"FakeModel {self.name!r} has no queued response left ({made} calls made)")
        if callable(response) and not isinstance(response, type):
            reply = response(call.messages, call.options)
        else:
            reply = response
        return self._to_completion(reply, call.messages)

    def _to_completion(self, reply: FakeReply, messages: list[Message]) -> Completion:
        if isinstance(reply, BaseException) or (isinstance(reply, type) and issubclass(reply, BaseException)):
            raise reply
        if isinstance(reply, Completion):
            # A fresh value per call, so a test that keeps one reply never sees another call's.
            return reply.model_copy(update={"model": reply.model or self.name}, deep=True)
        tool_calls: tuple[ToolCall, ...] = ()
        if isinstance(reply, str):
            text = reply
        elif isinstance(reply, Message):
            text, tool_calls = reply.content, reply.tool_calls
        elif isinstance(reply, list | tuple):
            if not reply or not all(isinstance(c, ToolCall) for c in reply):
                raise TypeError(
                    f"FakeModel {self.name!r}: a list response must be a non-empty list of ToolCall"
                )
            text, tool_calls = "", tuple(reply)
        else:
            raise TypeError(f"FakeModel {self.name!r}: unsupported response type {type(reply).__name__}")
        output_words = _words(text) + sum(_words(c.arguments) for c in tool_calls)
        usage = Usage(
            input_tokens=sum(_words(m.content) for m in messages), output_tokens=output_words, cost_usd=0.0
        )
        return Completion(
            text=text,
            tool_calls=tool_calls,
            finish_reason="tool_calls" if tool_calls else "stop",
            model=self.name,
            usage=usage,
        )


def _words(text: str) -> int:
    return len(text.split())
