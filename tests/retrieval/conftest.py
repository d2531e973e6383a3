"""Retrieval fixtures: a small corpus, fast fake embeddings, and MiniLM loaded once per session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _helpers import HashEmbedder, make_settings, write_corpus

from aiapp.config import Settings
from aiapp.gateway.embedders import Embedder
from aiapp.retrieval import Index


@pytest.fixture(scope="session")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """The bundled all-MiniLM-L6-v2 (the default runtime), loaded once for the whole session.

    The ONNX runtime's graph is built into a session folder, not the developer's ``~/.aiapp``.
    """
    from aiapp.gateway.embedders import build_embedder

    embedder = build_embedder()
    if hasattr(embedder, "cache_dir"):
        embedder.cache_dir = tmp_path_factory.mktemp("models")
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A four-document corpus (Markdown with front matter, text)."""
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def settings(aiapp_home: Path) -> Settings:
    """Default retrieval settings with a private AIAPP_HOME."""
    return make_settings(aiapp_home, chunk_tokens=64, chunk_overlap=8)


@pytest.fixture
def index(settings: Settings) -> Iterator[Index]:
    """An index on the embedded Qdrant Edge store with hashed-token embeddings."""
    with Index.open("test", settings, embedder=HashEmbedder()) as idx:
        yield idx
