"""Conversation memory: a window of recent turns, a summary hook for older ones, streaming, feedback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiapp.apps import RAGApp
from aiapp.apps._chat import SUMMARY_PREFIX
from aiapp.errors import InputError
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel
from aiapp.types import Hit, Message

HITS = [Hit(text="Set OLLAMA_HOST=0.0.0.0 to listen on all interfaces.", source="faq.md", chunk_id="faq#1")]


class Fixed:
    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        return HITS[:k]


@pytest.fixture
def fake() -> FakeModel:
    return FakeModel(default=lambda messages, options: f"answer {len(messages)} [1]")


@pytest.fixture
def app(fake: FakeModel) -> Iterator[RAGApp]:
    with Gateway(models={"fake": fake}) as gw:
        yield RAGApp(gateway=gw, retriever=Fixed(), model="fake")


def turns(messages: list[Message]) -> list[tuple[str, str]]:
    """The conversation part of a request: everything between the system prompt and the question."""
    return [(m.role, m.content) for m in messages[1:-1]]


def test_history_is_windowed_and_citations_are_stripped(app: RAGApp, fake: FakeModel) -> None:
    chat = app.conversation(window=2)
    first = chat.ask("q1")
    assert turns(fake.last_call.messages) == []
    chat.ask("q2")
    assert turns(fake.last_call.messages) == [("user", "q1"), ("assistant", first.text.removesuffix(" [1]"))]
    chat.ask("q3")
    chat.ask("q4")
    history = turns(fake.last_call.messages)
    assert [content for role, content in history if role == "user"] == ["q2", "q3"]  # q1 left the window
    assert all("[1]" not in content for _, content in history)
    assert len(chat.answers) == 4 and chat.last is chat.answers[-1] and chat.summary is None


def test_the_summary_hook_folds_turns_leaving_the_window(app: RAGApp, fake: FakeModel) -> None:
    seen: list[tuple[str | None, list[str]]] = []

    def summarize(previous: str | None, dropped: list[Message]) -> str:
        seen.append((previous, [m.content for m in dropped]))
        return " / ".join(filter(None, [previous, *(m.content for m in dropped if m.role == "user")]))

    chat = app.conversation(window=1, summarize=summarize)
    chat.ask("q1")
    chat.ask("q2")
    chat.ask("q3")
    assert [previous for previous, _ in seen] == [None, "q1"]
    assert seen[0][1][0] == "q1" and seen[0][1][1].startswith("answer")
    assert chat.summary == "q1 / q2"
    chat.ask("q4")
    sent = fake.last_call.messages
    assert sent[1] == Message.system(SUMMARY_PREFIX + "q1 / q2")
    assert [m.content for m in sent[2:-1] if m.role == "user"] == ["q3"]
    assert chat.summary == "q1 / q2 / q3"


def test_window_zero_sends_no_history(app: RAGApp, fake: FakeModel) -> None:
    chat = app.conversation(window=0)
    chat.ask("q1")
    chat.ask("q2")
    assert turns(fake.last_call.messages) == []
    with pytest.raises(InputError, match="window"):
        app.conversation(window=-1)


def test_streamed_turns_are_remembered(app: RAGApp, fake: FakeModel) -> None:
    chat = app.conversation()
    stream = chat.stream("q1")
    assert "".join(stream).startswith("answer")
    assert chat.last is stream.answer
    chat.ask("q2")
    assert turns(fake.last_call.messages)[0] == ("user", "q1")


def test_feedback_and_reset(app: RAGApp) -> None:
    chat = app.conversation()
    with pytest.raises(InputError, match="no answer"):
        chat.feedback(1)
    answer = chat.ask("q1")
    assert chat.feedback(-1, "wrong port") == answer.trace_id
    store = app.gateway.tracer.store
    assert store is not None and store.feedback(answer.trace_id or "")[0]["comment"] == "wrong port"
    chat.reset()
    assert chat.history() == [] and chat.last is None
