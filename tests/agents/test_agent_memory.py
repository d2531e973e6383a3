"""Conversation and long-term memory, scoped per user and session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agent_helpers import HashEmbedder, gateway

from aiapp.agents import Agent, ConversationMemory, LongTermMemory, Memory, MemoryScope, VectorMemory
from aiapp.errors import ConfigError
from aiapp.testing import FakeModel
from aiapp.types import Message, ToolCall

ANA, BOB = MemoryScope("ana", "s1"), MemoryScope("bob", "s1")


def test_conversation_memory_keeps_a_window_per_scope() -> None:
    memory = ConversationMemory(window=3)
    memory.append(ANA, [Message.user(f"m{i}") for i in range(5)])
    assert [m.content for m in memory.history(ANA)] == ["m2", "m3", "m4"]
    assert memory.history(BOB) == [] and memory.history(MemoryScope("ana", "s2")) == []
    memory.clear(ANA)
    assert memory.history(ANA) == []


def test_agent_remembers_the_conversation_per_session() -> None:
    fake = FakeModel(["Your server is called atlas.", "It is called atlas.", "I don't know."])
    agent = Agent(gateway=gateway(m=fake), model="m", memory=Memory(conversation=ConversationMemory()))
    agent.run("My server is called atlas.", user="ana", session="s1")
    agent.run("What is my server called?", user="ana", session="s1")
    contents = [m.content for m in fake.calls[1].messages]
    assert contents[1:] == [
        "My server is called atlas.",
        "Your server is called atlas.",
        "What is my server called?",
    ]
    agent.run("What is my server called?", user="ana", session="s2")
    assert [m.role for m in fake.calls[2].messages] == ["system", "user"]


def test_vector_memory_recalls_by_meaning_within_scope(tmp_path: Path) -> None:
    store = VectorMemory(HashEmbedder(), path=tmp_path / "memory.json")
    assert isinstance(store, LongTermMemory)
    store.remember("ana prefers answers in French", scope=ANA)
    store.remember("ana runs ollama on ubuntu", scope=MemoryScope("ana", "other-session"))
    store.remember("bob runs ollama on windows", scope=BOB)
    hits = store.recall("what os does ana run ollama on", scope=ANA, k=5)
    assert hits[0].text == "ana runs ollama on ubuntu"  # user scope spans sessions
    assert all("bob" not in h.text for h in hits) and len(hits) == 2
    # saved atomically, reloaded by a new instance
    again = VectorMemory(HashEmbedder(), path=tmp_path / "memory.json")
    assert len(again.recall("ollama", scope=BOB)) == 1
    assert again.forget(BOB) == 1 and again.recall("ollama", scope=BOB) == []
    per_session = VectorMemory(HashEmbedder(), scope_by="session")
    per_session.remember("only here", scope=ANA)
    assert per_session.recall("here", scope=MemoryScope("ana", "s2")) == []


def test_corrupt_memory_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "memory.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"memory\.json"):
        VectorMemory(HashEmbedder(), path=path)


def test_agent_long_term_memory_tools_and_recall() -> None:
    store = VectorMemory(HashEmbedder())
    fake = FakeModel(
        [
            [ToolCall(id="r1", name="remember", arguments=json.dumps({"fact": "ana uses a 4090 GPU"}))],
            "Noted.",
            "You use a 4090 GPU.",
        ]
    )
    agent = Agent(gateway=gateway(m=fake), model="m", memory=Memory(long_term=store, recall_k=2))
    assert {"remember", "recall"} <= set(agent.tools)
    run = agent.run("Remember that I use a 4090 GPU.", user="ana")
    assert run.tool_calls[0].status == "ok"  # granted by the agent that owns the memory
    assert store.recall("gpu", scope=MemoryScope("ana"))[0].text == "ana uses a 4090 GPU"
    agent.run("Which GPU do I use?", user="ana")
    assert "What you remember that may be relevant:\n- ana uses a 4090 GPU" in fake.last_messages[0].content
    agent_bob = Agent(gateway=gateway(m=FakeModel(["?"])), model="m", memory=Memory(long_term=store))
    run = agent_bob.run("Which GPU do I use?", user="bob")
    assert "remember" not in run.messages[0].content
