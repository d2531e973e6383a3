"""The index records which embedder embedded its documents, and a search refuses one it cannot use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from _helpers import HashEmbedder

from aiapp.config import Settings
from aiapp.errors import ConfigError
from aiapp.gateway.embedders import Embedder, TextKind, Vectors
from aiapp.retrieval import Index


class QuantizedHash(HashEmbedder):
    """The ingest variant of :class:`TwoPrecisionHash`: the same vectors, rounded to 1/64."""

    def __init__(self) -> None:
        super().__init__(name="test/hash+int8")

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        vectors = np.round(super().embed(texts, kind=kind) * 64) / 64
        return vectors.astype(np.float32)


class TwoPrecisionHash(HashEmbedder):
    """Queries at full precision; ingest with :class:`QuantizedHash` (as the ONNX MiniLM does)."""

    def __init__(self) -> None:
        super().__init__()
        self.ingest = QuantizedHash()

    def for_ingest(self) -> Embedder:
        return self.ingest

    def searches(self, documents: str) -> bool:
        return documents in (self.name, self.ingest.name)


def test_ingest_records_the_ingest_embedder_and_the_query_embedder_searches_it(
    settings: Settings, corpus: Path
) -> None:
    embedder = TwoPrecisionHash()
    with Index.open("test", settings, embedder=embedder) as index:
        report = index.ingest(corpus)
        assert report.chunks_embedded > 0 and embedder.ingest.texts == report.chunks_embedded
        assert embedder.texts == 0  # documents went through the ingest variant only
        manifest = index.manifest
        assert manifest is not None and manifest.embedder == "test/hash+int8"
        hits = index.search("port", k=2, mode="dense")
        assert hits and embedder.texts == 1  # the query went through the query embedder


def test_switching_the_ingest_precision_rebuilds_and_says_why(settings: Settings, corpus: Path) -> None:
    with Index.open("test", settings, embedder=TwoPrecisionHash()) as index:
        index.ingest(corpus)
    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        report = index.ingest(corpus)
        assert report.reason == "embedding model changed from test/hash+int8 to test/hash"
        assert report.chunks_embedded == report.chunks_total


def test_a_search_refuses_documents_its_embedder_cannot_search(settings: Settings, corpus: Path) -> None:
    with Index.open("test", settings, embedder=TwoPrecisionHash()) as index:
        index.ingest(corpus)
    with (
        Index.open("test", settings, embedder=HashEmbedder()) as index,
        pytest.raises(
            ConfigError, match=r"built with test/hash\+int8, which the configured embedder test/hash"
        ) as info,
    ):
        index.search("port")
    assert info.value.field == "retrieval.embedder" and "re-run `aiapp index test`" in str(info.value)
