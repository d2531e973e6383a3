"""Qdrant Edge, the embedded default store (the only module that imports ``qdrant_edge``).

Each index version is one Edge shard folder under ``<index>/store/<version>/``: persistent, HNSW
for dense vectors, a BM25 sparse vector with Qdrant's IDF modifier, payload indexes, and the
engine's own RRF/DBSF fusion. A new version starts as a file copy of the current one (made while
nothing writes to it), so a crash mid-ingest never touches the version being searched. Shards are
created without a write-ahead log: every version is flushed before it is published and never
written again, and a WAL-less shard can be opened by several processes at once.

Qdrant's BM25 embedder (tokenizer, stop words, stemmer) also lives here; the server store reuses it
so both backends index the same sparse vectors.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from aiapp.errors import ConfigError
from aiapp.retrieval._types import FilterSpec, SearchMode
from aiapp.retrieval.stores._base import (
    DENSE,
    INDEXED_FIELDS,
    SPARSE,
    Fusion,
    Shard,
    SparseEncoder,
    SparseVector,
    Store,
    StoreHit,
    StorePoint,
    parse_filter,
)

_BATCH = 512
_HUGE_K = 1e9  # BM25 with k -> infinity and b = 0 weighs each term by its count: used to measure lengths


class Bm25Encoder(SparseEncoder):
    """Qdrant's BM25 sparse embedder (English stop words and stemming, IDF applied by the store).

    Args:
        avg_len: Average document length in BM25 tokens (measured on the corpus when an index is built).
        k: Term-frequency saturation.
        b: Length normalization.
    """

    def __init__(self, *, avg_len: float = 256.0, k: float = 1.2, b: float = 0.75) -> None:
        self.avg_len = float(avg_len)
        self.k = float(k)
        self.b = float(b)
        self._model = qe.Bm25(qe.Bm25Config(k=self.k, b=self.b, avg_len=max(self.avg_len, 1.0)))
        self._counter: Any = None

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Term-frequency weights per document."""
        out: list[SparseVector] = []
        for text in texts:
            vec = self._model.embed_document(text)
            out.append(SparseVector(list(vec.indices), list(vec.values)))
        return out

    def embed_query(self, text: str) -> SparseVector:
        """Each distinct query term with weight 1 (the store multiplies in its IDF)."""
        vec = self._model.embed_query(text)
        return SparseVector(list(vec.indices), list(vec.values))

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Documents' lengths in BM25 tokens."""
        if self._counter is None:
            self._counter = qe.Bm25(qe.Bm25Config(k=_HUGE_K, b=0.0))
        return [round(sum(self._counter.embed_document(t).values)) for t in texts]

    def fingerprint(self) -> dict[str, Any]:
        """The model and its parameters."""
        return {"model": "qdrant-bm25", "k": self.k, "b": self.b, "avg_len": round(self.avg_len, 2)}


class EdgeStore(Store):
    """Index versions as Qdrant Edge shards under ``root``."""

    kind = "edge"

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, version: str, *, dim: int, base: str | None = None) -> Shard:
        """A new shard: a copy of ``base`` or an empty one with payload indexes."""
        path = self.root / version
        if path.exists():
            shutil.rmtree(path)
        self.root.mkdir(parents=True, exist_ok=True)
        if base is not None:
            shutil.copytree(self.root / base, path)
            return EdgeShard(qe.EdgeShard.load(str(path)))
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            # No WAL: a version is written once, flushed, then only read. Without a WAL several
            # processes can open the same version (the WAL is locked by one process).
            wal_enabled=False,
        )
        shard = qe.EdgeShard.create(str(path), config)
        for name, kind in INDEXED_FIELDS.items():
            schema = qe.PayloadSchemaType.Keyword if kind == "keyword" else qe.PayloadSchemaType.Float
            shard.update(qe.UpdateOperation.create_field_index(name, schema))
        return EdgeShard(shard)

    def open(self, version: str) -> Shard:
        """Load an existing shard."""
        path = self.root / version
        if not path.is_dir():
            raise ConfigError(f"index data is missing: {path} (re-run `aiapp index`)")
        return EdgeShard(qe.EdgeShard.load(str(path)))

    def drop(self, version: str) -> None:
        """Delete a shard folder."""
        shutil.rmtree(self.root / version, ignore_errors=True)

    def versions(self) -> list[str]:
        """Shard folders present."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())


class EdgeShard(Shard):
    """One Qdrant Edge shard."""

    def __init__(self, shard: Any) -> None:
        self._shard = shard

    def upsert(self, points: Sequence[StorePoint]) -> None:
        """Insert or replace points, in batches."""
        for start in range(0, len(points), _BATCH):
            batch = [
                qe.Point(
                    id=p.id,
                    vector={DENSE: p.dense, SPARSE: qe.SparseVector(p.sparse.indices, p.sparse.values)},
                    payload=p.payload,
                )
                for p in points[start : start + _BATCH]
            ]
            self._shard.update(qe.UpdateOperation.upsert_points(batch))

    def delete(self, ids: Sequence[str]) -> None:
        """Delete points by id."""
        for start in range(0, len(ids), _BATCH):
            self._shard.update(qe.UpdateOperation.delete_points(list(ids[start : start + _BATCH])))

    def search(
        self,
        *,
        dense: list[float] | None,
        sparse: SparseVector | None,
        mode: SearchMode,
        k: int,
        fusion: Fusion,
        filter: FilterSpec | None = None,
    ) -> list[StoreHit]:
        """Dense, BM25, or both fused by the engine (DBSF or RRF)."""
        condition = _edge_filter(filter)
        legs: list[Any] = []
        if mode in ("dense", "hybrid") and dense is not None:
            legs.append(qe.Query.Nearest(dense, using=DENSE))
        if mode in ("sparse", "hybrid") and sparse is not None and sparse.indices:
            legs.append(qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE))
        if not legs:
            return []
        if len(legs) == 1:
            request = qe.QueryRequest(limit=k, query=legs[0], filter=condition, with_payload=True)
        else:
            method: Any = qe.Fusion.Dbsf() if fusion.method == "dbsf" else qe.Fusion.Rrf(k=fusion.rrf_k)
            limit = max(fusion.candidates, k)
            request = qe.QueryRequest(
                limit=k,
                prefetches=[qe.Prefetch(limit=limit, query=leg, filter=condition) for leg in legs],
                query=method,
                filter=condition,
                with_payload=True,
            )
        return [
            StoreHit(str(p.id), float(p.score), dict(p.payload or {})) for p in self._shard.query(request)
        ]

    def count(self) -> int:
        """Points in the shard."""
        return int(self._shard.info().points_count)

    def ids(self) -> set[str]:
        """All point ids (scrolled)."""
        out: set[str] = set()
        offset: Any = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1024, with_payload=False, with_vector=False)
            )
            out.update(str(r.id) for r in records)
            if offset is None or not records:
                return out

    def commit(self) -> None:
        """Flush, build indexes (HNSW) and flush again."""
        self._shard.flush()
        self._shard.optimize()
        self._shard.flush()

    def close(self) -> None:
        """Close the shard."""
        self._shard.close()


def _edge_filter(spec: FilterSpec | None) -> Any:
    conditions: list[Any] = []
    for key, op, value in parse_filter(spec):
        if op == "eq":
            conditions.append(qe.FieldCondition(key=key, match=qe.MatchValue(value)))
        elif op == "any":
            conditions.append(qe.FieldCondition(key=key, match=qe.MatchAny(value)))
        else:
            conditions.append(qe.FieldCondition(key=key, range=qe.RangeFloat(**value)))
    return qe.Filter(must=conditions) if conditions else None
