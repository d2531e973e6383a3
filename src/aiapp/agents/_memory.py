"""Agent memory, scoped per user and session.

- :class:`ConversationMemory` keeps the last ``window`` messages of each (user, session)
  conversation: the tasks and the agent's final answers, so a follow-up question has its context.
- A :class:`LongTermMemory` remembers facts and recalls the ones relevant to a query.
  :class:`VectorMemory` is the built-in one: embeddings (any
  :class:`~aiapp.gateway.embedders.Embedder`, the local MiniLM by default) searched in memory and,
  given a ``path``, saved atomically to a JSON file. Long-term memories are scoped per user by
  default (``scope_by="session"`` narrows them to one session). :class:`~aiapp.agents.IndexMemory`
  keeps them in an aiapp retrieval index instead.
- :class:`Memory` bundles the two for :class:`~aiapp.agents.Agent`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from aiapp._files import atomic_write
from aiapp.errors import ConfigError
from aiapp.types import Hit, Message

if TYPE_CHECKING:
    from aiapp.gateway.embedders import Embedder


@dataclass(frozen=True)
class MemoryScope:
    """Whose memory: a user, and one of their sessions (conversations)."""

    user: str = "default"
    session: str = "default"


class ConversationMemory:
    """The last ``window`` messages of each (user, session) conversation, in memory.

    Args:
        window: How many messages to keep per conversation (a task and its answer are two).
    """

    def __init__(self, *, window: int = 20) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._conversations: dict[MemoryScope, deque[Message]] = {}
        self._lock = threading.Lock()

    def history(self, scope: MemoryScope) -> list[Message]:
        """The remembered messages of a conversation, oldest first."""
        with self._lock:
            return list(self._conversations.get(scope, ()))

    def append(self, scope: MemoryScope, messages: Sequence[Message]) -> None:
        """Add messages to a conversation, dropping the oldest beyond the window."""
        with self._lock:
            queue = self._conversations.setdefault(scope, deque(maxlen=self.window))
            queue.extend(messages)

    def clear(self, scope: MemoryScope | None = None) -> None:
        """Forget one conversation, or all of them."""
        with self._lock:
            if scope is None:
                self._conversations.clear()
            else:
                self._conversations.pop(scope, None)


@runtime_checkable
class LongTermMemory(Protocol):
    """A store of facts an agent can remember and recall, scoped per user/session."""

    def remember(self, text: str, *, scope: MemoryScope, metadata: dict[str, Any] | None = None) -> str:
        """Store ``text``; returns its id."""
        ...

    def recall(self, query: str, *, scope: MemoryScope, k: int = 5) -> list[Hit]:
        """The ``k`` stored texts most relevant to ``query`` within ``scope``, best first."""
        ...


class VectorMemory:
    """Long-term memory on embeddings: exact cosine search over the scope's memories.

    Args:
        embedder: Turns texts into vectors (default: :func:`~aiapp.gateway.embedders.build_embedder`,
            the offline MiniLM, loaded on first use).
        path: A JSON file to load from and save to after each ``remember`` (atomic replace).
        scope_by: ``"user"`` (memories follow a user across sessions) or ``"session"``.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        path: Path | str | None = None,
        scope_by: Literal["user", "session"] = "user",
    ) -> None:
        self._embedder = embedder
        self.path = Path(path) if path is not None else None
        self.scope_by = scope_by
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            try:
                self._items = json.loads(self.path.read_text(encoding="utf-8"))["memories"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"cannot read the memory file: {exc}", path=str(self.path)) from exc

    @property
    def embedder(self) -> Embedder:
        """The embedder (built on first use)."""
        if self._embedder is None:
            from aiapp.gateway.embedders import build_embedder

            self._embedder = build_embedder()
        return self._embedder

    def _key(self, scope: MemoryScope) -> str:
        return scope.user if self.scope_by == "user" else f"{scope.user}/{scope.session}"

    def remember(self, text: str, *, scope: MemoryScope, metadata: dict[str, Any] | None = None) -> str:
        """Embed and store ``text`` for ``scope``; storing the same text twice keeps one copy."""
        key = self._key(scope)
        memory_id = hashlib.sha256(f"{key}\0{text}".encode()).hexdigest()[:16]
        vector = [float(v) for v in self.embedder.embed([text], kind="document")[0]]
        item = {
            "id": memory_id,
            "scope": key,
            "text": text,
            "vector": vector,
            "metadata": dict(metadata or {}),
            "created_at": time.time(),
        }
        with self._lock:
            self._items = [i for i in self._items if i["id"] != memory_id] + [item]
            self._save()
        return memory_id

    def recall(self, query: str, *, scope: MemoryScope, k: int = 5) -> list[Hit]:
        """The ``k`` memories of ``scope`` closest to ``query`` (cosine), best first."""
        key = self._key(scope)
        with self._lock:
            items = [i for i in self._items if i["scope"] == key]
        if not items or k < 1:
            return []
        import numpy as np

        query_vec = self.embedder.embed([query], kind="query")[0]
        matrix = np.asarray([i["vector"] for i in items], dtype=np.float32)
        scores = matrix @ np.asarray(query_vec, dtype=np.float32)
        order = np.argsort(-scores)[:k]
        return [
            Hit(
                text=items[i]["text"],
                score=float(scores[i]),
                source=f"memory:{key}",
                chunk_id=items[i]["id"],
                doc_id=items[i]["id"],
                metadata={**items[i]["metadata"], "created_at": items[i]["created_at"]},
            )
            for i in order
        ]

    def forget(self, scope: MemoryScope) -> int:
        """Delete every memory of ``scope``; returns how many were deleted."""
        key = self._key(scope)
        with self._lock:
            before = len(self._items)
            self._items = [i for i in self._items if i["scope"] != key]
            self._save()
            return before - len(self._items)

    def _save(self) -> None:
        if self.path is None:
            return
        atomic_write(self.path, json.dumps({"version": 1, "memories": self._items}))


class Memory:
    """An agent's memory: the conversation so far and, optionally, a long-term store.

    Args:
        conversation: Per-(user, session) conversation memory (``None`` for none).
        long_term: A long-term store; the agent then gets ``remember``/``recall`` tools and sees the
            memories most relevant to each task.
        recall_k: How many memories to show the model at the start of each run (0 for none).
    """

    def __init__(
        self,
        *,
        conversation: ConversationMemory | None = None,
        long_term: LongTermMemory | None = None,
        recall_k: int = 3,
    ) -> None:
        self.conversation = conversation
        self.long_term = long_term
        self.recall_k = recall_k
