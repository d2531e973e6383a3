"""Test helpers shared by the retrieval tests and the crash-test subprocess."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aiapp.config import RetrievalSettings, Settings
from aiapp.gateway.embedders import Embedder, TextKind, Vectors, normalize
from aiapp.testing import embed_text

REPO = Path(__file__).resolve().parents[2]


class HashEmbedder(Embedder):
    """Deterministic hashed-token embeddings (the stub server's): fast, no model, no network."""

    name = "test/hash"
    dim = 64
    max_tokens = 512

    def __init__(self, *, name: str = "test/hash") -> None:
        self.name = name
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        self.calls += 1
        self.texts += len(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize(np.asarray([embed_text(t, self.dim) for t in texts], dtype=np.float32))

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))


class StallingEmbedder(HashEmbedder):
    """Touches ``marker`` then sleeps on its first call: the crash test kills the process there."""

    def __init__(self, marker: Path, stall_s: float = 120.0) -> None:
        super().__init__()
        self.marker = marker
        self.stall_s = stall_s

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        self.marker.write_text("embedding")
        time.sleep(self.stall_s)
        return super().embed(texts, kind=kind)


def make_settings(home: Path, **retrieval: Any) -> Settings:
    """Settings with ``home`` as AIAPP_HOME and retrieval overrides."""
    settings = Settings(retrieval=RetrievalSettings(**retrieval))
    settings.home = home
    return settings


DOCS = {
    "guide/port.md": "---\ntitle: Networking\ntags: [server, network]\n---\n# Networking\n\n"
    "## Change the port\n\nThe server listens on port 11434. Set OLLAMA_HOST=0.0.0.0:8080 to change "
    "the port and the bind address.\n",
    "guide/gpu.md": "# GPUs\n\nNvidia GPUs with compute capability 5.0 and newer are supported. "
    "AMD cards work through ROCm.\n",
    "guide/models.md": "# Models\n\nPull a model with `ollama pull llama3`. Models are stored in "
    "~/.ollama/models; set OLLAMA_MODELS to move them.\n",
    "faq.txt": "Can I run it offline? Yes: once a model is pulled, no network is needed.\n",
}


def write_corpus(root: Path, docs: dict[str, str] | None = None) -> Path:
    """Write a small corpus under ``root``."""
    for rel, text in (docs or DOCS).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
