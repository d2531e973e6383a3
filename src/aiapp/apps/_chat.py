"""Conversation memory for a RAG app: a window of recent turns plus an optional running summary.

Each question is answered by :meth:`RAGApp.ask` with the conversation so far inserted before it:
a system message carrying the summary (when there is one), then the last ``window`` turns. Turns
that fall out of the window are handed to the ``summarize`` hook, which folds them into the
summary; without a hook they are dropped. Citation markers are removed from remembered answers,
since their numbers referred to an earlier turn's sources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiapp.apps._answer import Answer, AnswerStream, strip_citations
from aiapp.errors import InputError
from aiapp.types import Message

if TYPE_CHECKING:
    from aiapp.apps._rag import RAGApp

__all__ = ["Conversation", "Summarizer"]

Summarizer = Callable[[str | None, list[Message]], str]
"""``summarize(previous_summary, dropped_messages) -> new_summary``: fold turns leaving the window
into the running summary (call a model, truncate, extract key facts ...)."""

SUMMARY_PREFIX = "Summary of the conversation so far: "


class Conversation:
    """A chat session over a :class:`~aiapp.apps.RAGApp` (``app.conversation()``).

    Args:
        app: The app that answers.
        window: How many recent turns (question and answer) are sent verbatim.
        summarize: Folds turns leaving the window into a running summary; ``None`` drops them.

    Attributes:
        answers: Every answer so far, oldest first.
        summary: The running summary, when a ``summarize`` hook has produced one.
    """

    def __init__(self, app: RAGApp, *, window: int = 6, summarize: Summarizer | None = None) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise InputError(f"window must be a non-negative integer, got {window!r}")
        self.app = app
        self.window = window
        self.summarize = summarize
        self.answers: list[Answer] = []
        self.summary: str | None = None
        self._turns: list[tuple[Message, Message]] = []

    @property
    def last(self) -> Answer | None:
        """The most recent answer (for ``/sources`` and ``/feedback``)."""
        return self.answers[-1] if self.answers else None

    def history(self) -> list[Message]:
        """The messages sent before the next question: the summary, then the windowed turns."""
        out: list[Message] = []
        if self.summary:
            out.append(Message.system(SUMMARY_PREFIX + self.summary))
        for question, answer in self._turns:
            out.extend((question, answer))
        return out

    def ask(self, question: str) -> Answer:
        """Answer ``question`` in the context of the conversation, then remember the turn."""
        answer = self.app.ask(question, history=self.history())
        self._remember(answer)
        return answer

    def stream(self, question: str) -> AnswerStream:
        """Like :meth:`ask`, streaming; the turn is remembered when the stream ends."""
        inner = self.app.stream(question, history=self.history())

        async def run(sink: AnswerStream) -> AsyncIterator[str]:
            async for delta in inner:
                yield delta
            if inner.answer is not None:
                sink.answer = inner.answer
                self._remember(inner.answer)

        return AnswerStream(run)

    def feedback(self, score: float, comment: str | None = None) -> str:
        """Store feedback on the last answer's trace; returns that trace id.

        Raises:
            InputError: there is no answer yet, or it has no trace id.
        """
        last = self.last
        if last is None or last.trace_id is None:
            raise InputError("no answer to give feedback on yet")
        self.app.feedback(last.trace_id, score, comment)
        return last.trace_id

    def reset(self) -> None:
        """Forget the turns, the summary and the answers."""
        self._turns.clear()
        self.answers.clear()
        self.summary = None

    def _remember(self, answer: Answer) -> None:
        self.answers.append(answer)
        self._turns.append((Message.user(answer.question), Message.assistant(strip_citations(answer.text))))
        overflow = len(self._turns) - self.window
        if overflow <= 0:
            return
        dropped = self._turns[:overflow]
        del self._turns[:overflow]
        if self.summarize is not None:
            self.summary = self.summarize(self.summary, [m for turn in dropped for m in turn])
