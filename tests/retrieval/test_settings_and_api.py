"""The ``retrieval:`` config section and the package's public names."""

from __future__ import annotations

from pathlib import Path

import pytest

import aiapp
import aiapp.retrieval
from aiapp.config import load_settings
from aiapp.errors import ConfigError


def test_defaults_and_backend(tmp_path: Path) -> None:
    path = tmp_path / "aiapp.yaml"
    path.write_text("retrieval:\n  url: http://qdrant:6333\n  fusion: rrf\n")
    settings = load_settings(path)
    assert settings.retrieval.backend == "qdrant" and settings.retrieval.fusion == "rrf"
    assert settings.retrieval.embedder == "local/all-MiniLM-L6-v2"
    path.write_text("retrieval: {}\n")
    assert load_settings(path).retrieval.backend == "edge"


def test_bad_retrieval_settings_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "aiapp.yaml"
    path.write_text("retrieval:\n  chunk_tokens: 64\n  chunk_overlap: 40\n")
    with pytest.raises(ConfigError, match="must be under half of chunk_tokens") as info:
        load_settings(path)
    assert info.value.path == str(path) and info.value.field == "retrieval"
    path.write_text("retrieval:\n  fusion: max\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert (info.value.line, info.value.field) == (2, "retrieval.fusion")


def test_public_names() -> None:
    assert aiapp.Index is aiapp.retrieval.Index
    assert set(aiapp.retrieval.__all__) >= {"Index", "Document", "IngestReport", "Manifest", "Chunker"}
