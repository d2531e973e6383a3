"""A Qdrant server or cluster through ``qdrant-client`` (the only module that imports it).

Used when ``retrieval.url`` is set. Each index version is a collection named
``aiapp__<index>__<version>``; a new version is created by copying the current collection's points
(vectors included, nothing is re-embedded) and then editing the copy. ``url: ":memory:"`` or
``url: local`` run qdrant-client's local mode, which speaks the same API (brute force, for tests).
Sparse vectors come from Qdrant's BM25 (the Edge embedder), with the server applying the IDF modifier.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from aiapp.errors import ConfigError
from aiapp.retrieval._types import FilterSpec, SearchMode
from aiapp.retrieval.stores._base import (
    DENSE,
    INDEXED_FIELDS,
    SPARSE,
    Fusion,
    Shard,
    SparseVector,
    Store,
    StoreHit,
    StorePoint,
    parse_filter,
)

_BATCH = 256


class QdrantStore(Store):
    """Index versions as collections on a Qdrant server (or in qdrant-client's local mode).

    Args:
        index: The index name (collections are prefixed with it).
        url: ``http(s)://host:port``, ``:memory:``, or ``local`` (local mode under ``local_path``).
        api_key_env: Environment variable with the server's API key.
        local_path: Where ``url: local`` keeps its data.
    """

    kind = "qdrant"

    def __init__(
        self, index: str, *, url: str, api_key_env: str | None = None, local_path: Path | None = None
    ) -> None:
        self.prefix = f"aiapp__{index}__"
        if url == ":memory:":
            self._client = QdrantClient(location=":memory:")
        elif url == "local":
            if local_path is None:
                raise ConfigError(
                    "url: local needs a folder for qdrant-client's local mode", field="retrieval.url"
                )
            local_path.mkdir(parents=True, exist_ok=True)
            self._client = QdrantClient(path=str(local_path))
        elif url.startswith(("http://", "https://")):
            key = os.environ.get(api_key_env) if api_key_env else None
            if api_key_env and not key:
                raise ConfigError(
                    f"environment variable {api_key_env} is not set", field="retrieval.api_key_env"
                )
            self._client = QdrantClient(url=url, api_key=key)
        else:
            raise ConfigError(
                f"unsupported Qdrant url {url!r}: use http(s)://host:port, ':memory:' or 'local'",
                field="retrieval.url",
            )
        self.local = not url.startswith(("http://", "https://"))

    def _name(self, version: str) -> str:
        return self.prefix + version

    def create(self, version: str, *, dim: int, base: str | None = None) -> Shard:
        """A new collection, filled with a copy of ``base``'s points when given."""
        name = self._name(version)
        if self._client.collection_exists(name):
            self._client.delete_collection(name)
        self._client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns that payload indexes have no effect
            for field, kind in INDEXED_FIELDS.items():
                schema = (
                    models.PayloadSchemaType.KEYWORD if kind == "keyword" else models.PayloadSchemaType.FLOAT
                )
                self._client.create_payload_index(name, field, field_schema=schema)
        if base is not None:
            self._copy(self._name(base), name)
        return QdrantShard(self._client, name)

    def _copy(self, source: str, target: str) -> None:
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                source, limit=_BATCH, offset=offset, with_payload=True, with_vectors=True
            )
            if records:
                self._client.upsert(
                    target,
                    points=[
                        models.PointStruct(id=r.id, vector=r.vector or {}, payload=r.payload) for r in records
                    ],
                )
            if offset is None or not records:
                return

    def open(self, version: str) -> Shard:
        """An existing collection."""
        name = self._name(version)
        if not self._client.collection_exists(name):
            raise ConfigError(f"Qdrant collection {name!r} is missing (re-run `aiapp index`)")
        return QdrantShard(self._client, name)

    def drop(self, version: str) -> None:
        """Delete a collection."""
        name = self._name(version)
        if self._client.collection_exists(name):
            self._client.delete_collection(name)

    def versions(self) -> list[str]:
        """Collections of this index."""
        names = [c.name for c in self._client.get_collections().collections]
        return sorted(n[len(self.prefix) :] for n in names if n.startswith(self.prefix))

    def close(self) -> None:
        """Close the client."""
        self._client.close()


class QdrantShard(Shard):
    """One collection."""

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name

    def upsert(self, points: Sequence[StorePoint]) -> None:
        """Insert or replace points, in batches."""
        for start in range(0, len(points), _BATCH):
            batch = [
                models.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: p.dense,
                        SPARSE: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                    },
                    payload=p.payload,
                )
                for p in points[start : start + _BATCH]
            ]
            self._client.upsert(self.name, points=batch, wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete points by id."""
        for start in range(0, len(ids), _BATCH):
            self._client.delete(
                self.name,
                points_selector=models.PointIdsList(points=list(ids[start : start + _BATCH])),
                wait=True,
            )

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
        """Dense, BM25, or both fused by Qdrant (DBSF or RRF)."""
        condition = _client_filter(filter)
        legs: list[tuple[Any, str]] = []
        if mode in ("dense", "hybrid") and dense is not None:
            legs.append((dense, DENSE))
        if mode in ("sparse", "hybrid") and sparse is not None and sparse.indices:
            legs.append((models.SparseVector(indices=sparse.indices, values=sparse.values), SPARSE))
        if not legs:
            return []
        if len(legs) == 1:
            result = self._client.query_points(
                self.name,
                query=legs[0][0],
                using=legs[0][1],
                limit=k,
                query_filter=condition,
                with_payload=True,
            )
        else:
            query: Any = (
                models.FusionQuery(fusion=models.Fusion.DBSF)
                if fusion.method == "dbsf"
                else models.RrfQuery(rrf=models.Rrf(k=fusion.rrf_k))
            )
            limit = max(fusion.candidates, k)
            result = self._client.query_points(
                self.name,
                prefetch=[models.Prefetch(query=q, using=u, limit=limit, filter=condition) for q, u in legs],
                query=query,
                limit=k,
                query_filter=condition,
                with_payload=True,
            )
        return [StoreHit(str(p.id), float(p.score), dict(p.payload or {})) for p in result.points]

    def count(self) -> int:
        """Points in the collection."""
        return int(self._client.count(self.name, exact=True).count)

    def ids(self) -> set[str]:
        """All point ids (scrolled)."""
        out: set[str] = set()
        offset: Any = None
        while True:
            records, offset = self._client.scroll(
                self.name, limit=1024, offset=offset, with_payload=False, with_vectors=False
            )
            out.update(str(r.id) for r in records)
            if offset is None or not records:
                return out

    def commit(self) -> None:
        """Writes were made with ``wait=True``: nothing left to do."""

    def close(self) -> None:
        """Nothing to release per collection (the store owns the client)."""


def _client_filter(spec: FilterSpec | None) -> Any:
    conditions: list[Any] = []
    for key, op, value in parse_filter(spec):
        if op == "eq":
            conditions.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        elif op == "any":
            conditions.append(models.FieldCondition(key=key, match=models.MatchAny(any=value)))
        else:
            conditions.append(models.FieldCondition(key=key, range=models.Range(**value)))
    return models.Filter(must=conditions) if conditions else None
