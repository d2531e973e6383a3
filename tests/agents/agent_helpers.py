"""Shared test helpers for the agent tests: a keyword retriever, a gateway over fakes, a tiny embedder."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from aiapp.config import load_settings
from aiapp.gateway import Gateway, Model
from aiapp.gateway.embedders import Embedder, TextKind, Vectors, normalize
from aiapp.testing import embed_text
from aiapp.types import Hit

DOCS = {
    "docs/faq.md": (
        "Ollama binds to 127.0.0.1 port 11434 by default. "
        "Change the bind address with the OLLAMA_HOST environment variable."
    ),
    "docs/gpu.md": "A 7B model needs about 8 GB of RAM. A 13B model needs about 16 GB of RAM.",
    "docs/linux.md": "On Linux, Ollama runs as a systemd service named ollama.",
}


class KeywordRetriever:
    """Scores documents by how many query words they contain; deterministic and offline."""

    def __init__(self, docs: dict[str, str] | None = None) -> None:
        self.docs = dict(DOCS if docs is None else docs)
        self.queries: list[str] = []

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        self.queries.append(query)
        words = set(re.findall(r"\w+", query.lower()))
        scored = []
        for source, text in self.docs.items():
            score = len(words & set(re.findall(r"\w+", text.lower())))
            if score:
                scored.append(
                    Hit(text=text, score=float(score), source=source, chunk_id=source, doc_id=source)
                )
        scored.sort(key=lambda h: (-h.score, h.source))
        return scored[:k]


class HashEmbedder(Embedder):
    """The stub server's hashed-token embedding as an :class:`Embedder` (no model download)."""

    name = "test/hash"
    dim = 64

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        return normalize(np.asarray([embed_text(t, self.dim) for t in texts], dtype=np.float32))


def gateway(**models: Model) -> Gateway:
    """A gateway serving the given fake models as routes (traces go to the test's AIAPP_HOME)."""
    return Gateway(load_settings(), models=dict(models))
