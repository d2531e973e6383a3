"""The store seam: versioned collections of chunks with dense and BM25 vectors.

A :class:`Store` holds *versions*. Ingest forks the current version into a new one (a copy), edits
the copy, and only then is the index's pointer moved to it; searches keep reading the old version
until that moment. Qdrant Edge versions are shard folders; Qdrant server versions are collections.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiapp.errors import InputError
from aiapp.retrieval._types import FilterSpec, SearchMode

#: Payload fields with an index, and their kinds (filters on other fields still work, unindexed).
INDEXED_FIELDS: dict[str, Literal["keyword", "float"]] = {
    "source": "keyword",
    "doc_id": "keyword",
    "tags": "keyword",
    "modified": "float",
}
DENSE = "dense"
SPARSE = "bm25"
_RANGE_KEYS = {"gt", "gte", "lt", "lte"}


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: token ids and their weights."""

    indices: list[int]
    values: list[float]


@dataclass
class StorePoint:
    """One chunk as the store keeps it."""

    id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoreHit:
    """One search result from a store."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses the dense and BM25 lists: ``dbsf`` or ``rrf`` (with ``rrf_k``)."""

    method: Literal["dbsf", "rrf"] = "dbsf"
    rrf_k: int = 60
    candidates: int = 100


class SparseEncoder(abc.ABC):
    """Turns text into BM25 sparse vectors (documents: term-frequency weights; queries: term ids)."""

    @abc.abstractmethod
    def embed_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Document vectors."""

    @abc.abstractmethod
    def embed_query(self, text: str) -> SparseVector:
        """A query vector."""

    @abc.abstractmethod
    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Documents' lengths in BM25 tokens (after stop words and stemming)."""

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """What determines the vectors (an index is rebuilt when it changes)."""


class Shard(abc.ABC):
    """One version of an index in a store."""

    @abc.abstractmethod
    def upsert(self, points: Sequence[StorePoint]) -> None:
        """Insert or replace points."""

    @abc.abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Delete points by id (unknown ids are ignored)."""

    @abc.abstractmethod
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
        """The ``k`` best points, best first."""

    @abc.abstractmethod
    def count(self) -> int:
        """Points in this version."""

    @abc.abstractmethod
    def ids(self) -> set[str]:
        """Every point id in this version."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Make every write durable (and optimized) before the version is published."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the version."""


class Store(abc.ABC):
    """Versions of one index. ``kind`` names the backend in manifests."""

    kind: str = "store"

    @abc.abstractmethod
    def create(self, version: str, *, dim: int, base: str | None = None) -> Shard:
        """A new writable version: a copy of ``base``, or empty. A leftover ``version`` is replaced."""

    @abc.abstractmethod
    def open(self, version: str) -> Shard:
        """An existing version, for searching."""

    @abc.abstractmethod
    def drop(self, version: str) -> None:
        """Delete a version (missing ones are ignored)."""

    @abc.abstractmethod
    def versions(self) -> list[str]:
        """Versions present in the store."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the store's resources."""


def parse_filter(spec: FilterSpec | None) -> list[tuple[str, str, Any]]:
    """Validate a filter spec into (key, op, value) with op ``eq``, ``any`` or ``range``.

    Raises:
        InputError: naming the key whose condition is malformed.
    """
    out: list[tuple[str, str, Any]] = []
    for key, value in (spec or {}).items():
        if not isinstance(key, str) or not key:
            raise InputError(f"filter keys must be payload field names, got {key!r}")
        if isinstance(value, dict):
            bad = set(value) - _RANGE_KEYS
            if bad or not value:
                raise InputError(
                    f"filter {key!r}: a mapping must hold range bounds gt/gte/lt/lte, got {sorted(map(str, value))}"
                )
            out.append((key, "range", {k: float(v) for k, v in value.items()}))
        elif isinstance(value, list | tuple | set | frozenset):
            items = list(value)
            if not items or (
                not all(isinstance(v, str) for v in items)
                and not all(isinstance(v, int) and not isinstance(v, bool) for v in items)
            ):
                raise InputError(f"filter {key!r}: a list must hold strings or integers, got {items!r}")
            out.append((key, "any", items))
        elif isinstance(value, str | int | bool):
            out.append((key, "eq", value))
        else:
            raise InputError(f"filter {key!r}: unsupported value {value!r}")
    return out
