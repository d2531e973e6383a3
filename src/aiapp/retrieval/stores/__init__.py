"""Vector stores behind one seam: Qdrant Edge embedded (default) or a Qdrant server (``url:``).

:func:`build_store` picks one from settings; each engine is imported only by its own module, and
only when that store is used.
"""

from __future__ import annotations

from pathlib import Path

from aiapp.config import RetrievalSettings
from aiapp.retrieval.stores._base import (
    Fusion,
    Shard,
    SparseEncoder,
    SparseVector,
    Store,
    StoreHit,
    StorePoint,
    parse_filter,
)


def build_store(index: str, settings: RetrievalSettings, index_dir: Path) -> Store:
    """The store for ``index``: Qdrant Edge under ``index_dir/store``, or Qdrant at ``settings.url``."""
    if settings.backend == "qdrant":
        from aiapp.retrieval.stores.qdrant import QdrantStore

        url = settings.url or "local"
        return QdrantStore(
            index, url=url, api_key_env=settings.api_key_env, local_path=index_dir / "qdrant-local"
        )
    from aiapp.retrieval.stores.edge import EdgeStore

    return EdgeStore(index_dir / "store")


def build_sparse_encoder(avg_len: float) -> SparseEncoder:
    """Qdrant's BM25 with the corpus's average length (in BM25 tokens)."""
    from aiapp.retrieval.stores.edge import Bm25Encoder

    return Bm25Encoder(avg_len=avg_len)


__all__ = [
    "Fusion",
    "Shard",
    "SparseEncoder",
    "SparseVector",
    "Store",
    "StoreHit",
    "StorePoint",
    "build_sparse_encoder",
    "build_store",
    "parse_filter",
]
