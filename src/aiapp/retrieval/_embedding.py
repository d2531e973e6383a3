"""Embedding for ingest: a SQLite cache keyed by (model, text hash), length-sorted batches, progress.

Only texts missing from the cache reach the model. Texts are embedded longest-first across the
whole ingest (not per batch), so padding inside a batch is minimal and throughput matches one big
``encode`` call while still reporting progress batch by batch.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from aiapp.gateway.embedders import Embedder, Vectors

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, text_hash)
) WITHOUT ROWID
"""


def text_hash(text: str) -> str:
    """The cache key of a text (sha256, 32 hex digits)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EmbeddingCache:
    """Embeddings already computed, in ``$AIAPP_HOME/cache/embeddings.sqlite``.

    Args:
        path: The SQLite file (created with its folder); ``":memory:"`` for a throwaway cache.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get_many(self, model: str, hashes: Sequence[str]) -> dict[str, Vectors]:
        """Cached vectors for ``hashes`` (missing ones are absent from the result)."""
        out: dict[str, Vectors] = {}
        with self._lock:
            for start in range(0, len(hashes), 500):
                batch = list(hashes[start : start + 500])
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN ({marks})",
                    [model, *batch],
                )
                for key, blob in rows:
                    out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_many(self, model: str, items: Sequence[tuple[str, Vectors]]) -> None:
        """Store vectors (one transaction)."""
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings (model, text_hash, dim, vector) VALUES (?, ?, ?, ?)",
                [
                    (model, key, int(vec.shape[-1]), np.asarray(vec, dtype=np.float32).tobytes())
                    for key, vec in items
                ],
            )
            self._db.commit()

    def count(self, model: str | None = None) -> int:
        """Vectors stored (for one model, or all)."""
        with self._lock:
            if model is None:
                row = self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()
            else:
                row = self._db.execute("SELECT COUNT(*) FROM embeddings WHERE model = ?", (model,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Vectors, int]:
    """Embed ``texts`` as documents, using and filling ``cache``; returns (vectors, cache hits).

    ``progress(done, total)`` is called after each batch (and once for the cache hits).
    """
    total = len(texts)
    out: Vectors = np.zeros((total, 0), dtype=np.float32)
    if total == 0:
        return out, 0
    keys = [text_hash(t) for t in texts]
    found = cache.get_many(embedder.name, keys) if cache is not None else {}
    missing = sorted(
        {k: i for i, k in enumerate(keys) if k not in found}.values(), key=lambda i: -len(texts[i])
    )
    hits = total - len(missing) if cache is not None else 0
    fresh: dict[str, Vectors] = {}
    done = total - len(missing)
    if progress is not None:
        progress(done, total)
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        vectors = embedder.embed([texts[i] for i in batch], kind="document")
        items = [(keys[i], vectors[j]) for j, i in enumerate(batch)]
        fresh.update(items)
        if cache is not None:
            cache.put_many(embedder.name, items)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    vectors_by_key = {**found, **fresh}
    dim = next(iter(vectors_by_key.values())).shape[-1]
    out = np.empty((total, dim), dtype=np.float32)
    for i, key in enumerate(keys):
        vec = vectors_by_key[key]
        if vec.shape[-1] != dim:
            raise ValueError(f"embedding cache holds vectors of two sizes for {embedder.name}")
        out[i] = vec
    return out, hits
