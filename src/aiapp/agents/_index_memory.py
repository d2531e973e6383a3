"""Long-term memory backed by an aiapp retrieval index (:class:`aiapp.retrieval.Index`).

Each memory is a small document tagged with its scope; ``recall`` is the index's (hybrid) search
filtered to that tag. The index ingests a whole corpus at a time, so the memories are also kept in a
JSON file (written atomically) and each ``remember`` re-ingests the set — incrementally: only the new
memory is embedded, and a crash leaves the previous published version searchable.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aiapp._files import atomic_write
from aiapp.agents._memory import MemoryScope
from aiapp.config import default_home
from aiapp.errors import ConfigError
from aiapp.types import Hit

if TYPE_CHECKING:
    from aiapp.retrieval import Index


class IndexMemory:
    """Long-term memory in a retrieval index, scoped per user (or per session).

    Args:
        index: The index to keep memories in (use one of its own, not a document corpus's index:
            each ``remember`` replaces the index's contents with the memories).
        path: The JSON file of memories (default: ``$AIAPP_HOME/memory/<index name>.json``).
        scope_by: ``"user"`` (memories follow a user across sessions) or ``"session"``.
    """

    def __init__(
        self, index: Index, *, path: Path | str | None = None, scope_by: Literal["user", "session"] = "user"
    ) -> None:
        self.index = index
        self.path = Path(path) if path is not None else default_home() / "memory" / f"{index.name}.json"
        self.scope_by = scope_by
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []
        if self.path.exists():
            try:
                self._items = json.loads(self.path.read_text(encoding="utf-8"))["memories"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"cannot read the memory file: {exc}", path=str(self.path)) from exc

    def _tag(self, scope: MemoryScope) -> str:
        key = scope.user if self.scope_by == "user" else f"{scope.user}/{scope.session}"
        return f"memory:{key}"

    def remember(self, text: str, *, scope: MemoryScope, metadata: dict[str, Any] | None = None) -> str:
        """Store ``text`` for ``scope`` and re-ingest the memories; returns the memory's id."""
        from aiapp.retrieval import Document

        tag = self._tag(scope)
        memory_id = hashlib.sha256(f"{tag}\0{text}".encode()).hexdigest()[:16]
        with self._lock:
            if not any(i["id"] == memory_id for i in self._items):
                self._items.append(
                    {
                        "id": memory_id,
                        "tag": tag,
                        "text": text,
                        "metadata": dict(metadata or {}),
                        "at": time.time(),
                    }
                )
            documents = [
                Document(
                    source=f"{i['tag']}/{i['id']}",
                    text=i["text"],
                    metadata={**i["metadata"], "tags": [i["tag"]]},
                )
                for i in self._items
            ]
            self.index.ingest(documents)
            self._save()
        return memory_id

    def recall(self, query: str, *, scope: MemoryScope, k: int = 5) -> list[Hit]:
        """The ``k`` memories of ``scope`` most relevant to ``query`` (the index's hybrid search)."""
        tag = self._tag(scope)
        with self._lock:
            if not any(i["tag"] == tag for i in self._items) or k < 1:
                return []
        return self.index.search(query, k=k, filter={"tags": tag})

    def _save(self) -> None:
        atomic_write(self.path, json.dumps({"version": 1, "memories": self._items}))
