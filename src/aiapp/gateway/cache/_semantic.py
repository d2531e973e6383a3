"""The semantic cache index: reuse a reply for a request that says the same thing in other words.

Only the **last user message** is compared by meaning. Everything else must match exactly — it
forms the request's *scope* (:func:`~aiapp.gateway.cache._keys.semantic_scope`): the route and its
deployments, the prompt name@version and hash, the system prompt and earlier turns, every
generation parameter, the embedding model, and the **numbers** in the last user message. Within a
scope a hit needs cosine similarity ≥ ``threshold`` and a similar length (word-count ratio ≥
``min_length_ratio``).

Why the extra guards: on MRPC (``benchmarks/semantic_cache.py``), non-paraphrase pairs that
share most of their words mostly differ by a number or by one side saying more. Requiring equal
numbers and similar length lets the threshold drop from ~0.965 to 0.93 at the same ≤1% false-hit
rate, roughly doubling the share of true paraphrases that hit.

Vectors live in memory per scope and in SQLite (``$AIAPP_HOME/semantic_cache.db``) so they survive
restarts; the replies themselves stay in the exact cache (so its TTL applies to semantic hits too).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aiapp.gateway.cache._keys import word_count

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    words INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
"""

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SemanticMatch:
    """A semantic hit: the exact-cache key of the earlier request and how similar it was."""

    key: str
    similarity: float


class _Scope:
    """One scope's vectors: a growable matrix (capacity doubles) plus keys and word counts."""

    def __init__(self, dim: int) -> None:
        self.keys: list[str] = []
        self.words: list[int] = []
        self._matrix: Vector = np.zeros((16, dim), dtype=np.float32)

    @property
    def matrix(self) -> Vector:
        return self._matrix[: len(self.keys)]

    def add(self, key: str, words: int, vector: Vector, max_entries: int) -> list[str]:
        """Append an entry; past ``max_entries`` (+10% slack) the oldest go. Returns dropped keys."""
        size = len(self.keys)
        if size == self._matrix.shape[0]:
            grown = np.zeros((2 * size, self._matrix.shape[1]), dtype=np.float32)
            grown[:size] = self._matrix
            self._matrix = grown
        self._matrix[size] = vector
        self.keys.append(key)
        self.words.append(words)
        dropped: list[str] = []
        if len(self.keys) > max_entries + max_entries // 10:
            cut = len(self.keys) - max_entries
            dropped, self.keys, self.words = self.keys[:cut], self.keys[cut:], self.words[cut:]
            kept = len(self.keys)
            self._matrix[:kept] = self._matrix[cut : cut + kept].copy()
        return dropped


class SemanticIndex:
    """Embeddings of earlier requests' last user messages, by scope.

    Args:
        path: The SQLite file holding the vectors.
        embedder: The embedding model's name (vectors of different models never mix).
        threshold: Minimum cosine similarity for a hit.
        min_length_ratio: Minimum word-count ratio (shorter / longer) for a hit.
        max_entries: Entries kept per scope; the oldest go first.
    """

    def __init__(
        self,
        path: Path | str | None,
        *,
        embedder: str,
        threshold: float,
        min_length_ratio: float = 0.8,
        max_entries: int = 10_000,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.embedder = embedder
        self.threshold = threshold
        self.min_length_ratio = min_length_ratio
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._scopes: dict[str, _Scope] = {}
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def _scope(self, scope: str, dim: int) -> _Scope:
        entry = self._scopes.get(scope)
        if entry is None:
            entry = _Scope(dim)
            db = self._db()
            if db is not None:
                rows = db.execute(
                    "SELECT key, words, vector FROM vectors WHERE scope = ? ORDER BY created_at DESC LIMIT ?",
                    (self._stored(scope), self.max_entries),
                ).fetchall()
                for key, words, blob in reversed(rows):
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape[0] == dim:
                        entry.add(key, int(words), vector, self.max_entries)
            self._scopes[scope] = entry
        return entry

    def _stored(self, scope: str) -> str:
        return f"{self.embedder}:{scope}"

    def lookup(self, scope: str, text: str, vector: Vector) -> SemanticMatch | None:
        """The best earlier request in ``scope`` that passes the threshold and the length guard."""
        words = word_count(text)
        with self._lock:
            entry = self._scope(scope, vector.shape[0])
            if not entry.keys:
                return None
            similarities = entry.matrix @ vector
            candidates = np.nonzero(similarities >= self.threshold)[0]
            best: SemanticMatch | None = None
            for i in candidates:
                other = entry.words[i]
                ratio = min(words, other) / max(words, other) if max(words, other) else 1.0
                similarity = float(similarities[i])
                if ratio >= self.min_length_ratio and (best is None or similarity > best.similarity):
                    best = SemanticMatch(entry.keys[i], similarity)
            return best

    def add(self, scope: str, text: str, vector: Vector, key: str) -> None:
        """Remember a request's last user message under the exact-cache ``key`` of its reply."""
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        words = word_count(text)
        with self._lock:
            entry = self._scope(scope, vector.shape[0])
            if key in entry.keys:
                return
            dropped = entry.add(key, words, vector, self.max_entries)
            db = self._db()
            if db is not None:
                stored = self._stored(scope)
                db.execute(
                    "INSERT OR REPLACE INTO vectors (scope, key, words, vector, created_at) VALUES (?, ?, ?, ?, ?)",
                    (stored, key, words, vector.tobytes(), time.time()),
                )
                if dropped:
                    db.executemany(
                        "DELETE FROM vectors WHERE scope = ? AND key = ?", [(stored, k) for k in dropped]
                    )

    def close(self) -> None:
        """Close the database (vectors stay loaded; it reopens on next write)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
