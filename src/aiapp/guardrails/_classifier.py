"""The prompt-injection classifier: logistic regression over MiniLM embeddings and hashed n-grams.

Features of a text are the concatenation of

* its all-MiniLM-L6-v2 embedding (384 numbers, L2-normalized), and
* hashed character 3-5-grams and word unigrams of the lower-cased text (4,096 buckets, CRC-32,
  L2-normalized) — these carry the phrasing MiniLM, an English model, blurs in German or Spanish.

The weights ship in ``aiapp/guardrails/data/injection_lr.npz``, written by
``scripts/train_injection_classifier.py`` from ``prompt_injection_deepset/train.jsonl`` alone.
Two models ship: ``full`` (both feature sets) and ``lite`` (hashed n-grams only: no embedding, a
fraction of a millisecond, less accurate).
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from aiapp.errors import ConfigError

if TYPE_CHECKING:
    from aiapp.gateway.embedders import Embedder

__all__ = ["HASH_DIM", "InjectionClassifier", "LinearModel", "hashed_features", "load_weights"]

HASH_DIM = 4096
EMBED_DIM = 384
ModelKind = Literal["full", "lite"]
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_NGRAMS = (3, 4, 5)

Matrix = npt.NDArray[np.float32]


def hashed_features(texts: Sequence[str], dim: int = HASH_DIM) -> Matrix:
    """Hashed character 3-5-grams and word unigrams, one L2-normalized row per text."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        lowered = text.lower()
        padded = " " + _SPACE.sub(" ", lowered) + " "
        row = out[i]
        for n in _NGRAMS:
            for j in range(len(padded) - n + 1):
                row[zlib.crc32(padded[j : j + n].encode()) % dim] += 1.0
        for word in _WORD.findall(lowered):
            row[zlib.crc32(b"w:" + word.encode()) % dim] += 1.0
        norm = float(np.linalg.norm(row))
        if norm > 0:
            row /= norm
    return out


@dataclass(frozen=True)
class LinearModel:
    """A fitted logistic regression: ``p = sigmoid(x @ w + b)``, positive when ``p >= threshold``."""

    w: Matrix
    b: float
    threshold: float

    def proba(self, features: Matrix) -> npt.NDArray[np.float64]:
        """Injection probability for each row of ``features``."""
        z = features.astype(np.float64) @ self.w.astype(np.float64) + self.b
        result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        return result


def default_weights_path() -> Path:
    """Where the shipped weights live."""
    return Path(str(resources.files("aiapp.guardrails") / "data" / "injection_lr.npz"))


def load_weights(path: Path | None = None) -> dict[str, LinearModel]:
    """Load the ``full`` and ``lite`` models from an ``.npz`` written by the training script."""
    path = path or default_weights_path()
    try:
        with np.load(path, allow_pickle=False) as data:
            return {
                kind: LinearModel(
                    w=np.asarray(data[f"{kind}_w"], dtype=np.float32),
                    b=float(data[f"{kind}_b"]),
                    threshold=float(data[f"{kind}_threshold"]),
                )
                for kind in ("full", "lite")
            }
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"cannot load injection classifier weights: {exc}; "
            "re-create them with scripts/train_injection_classifier.py",
            path=str(path),
        ) from exc


class InjectionClassifier:
    """Scores texts for prompt injection. Thread-safe; one instance can serve a whole process.

    Args:
        model: ``full`` (embeddings + n-grams, default) or ``lite`` (n-grams only).
        embedder: The embedder for ``full`` (default: the local MiniLM, loaded on first use).
        weights: An ``.npz`` of weights (default: the shipped file).
        threshold: Override the decision threshold chosen on the training data's validation folds.
        cache_size: Scores kept for recently seen texts (a chat resends earlier turns).
    """

    def __init__(
        self,
        *,
        model: ModelKind = "full",
        embedder: Embedder | None = None,
        weights: Path | None = None,
        threshold: float | None = None,
        cache_size: int = 1024,
    ) -> None:
        if model not in ("full", "lite"):
            raise ConfigError(f"unknown injection model {model!r} (known: full, lite)")
        self.kind: ModelKind = model
        self.linear = load_weights(weights)[model]
        self.threshold = self.linear.threshold if threshold is None else threshold
        self._embedder = embedder
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._cache_size = cache_size

    @property
    def embedder(self) -> Embedder:
        """The embedder (built on first use)."""
        with self._lock:
            if self._embedder is None:
                from aiapp.gateway.embedders import build_embedder

                self._embedder = build_embedder()
            return self._embedder

    def features(self, texts: Sequence[str]) -> Matrix:
        """The feature rows this classifier's model reads."""
        hashed = hashed_features(texts)
        if self.kind == "lite":
            return hashed
        embedded = np.asarray(self.embedder.embed(texts, kind="query"), dtype=np.float32)
        return np.hstack([embedded, hashed])

    def scores(self, texts: Sequence[str]) -> list[float]:
        """Injection probabilities, one per text (cached by content hash)."""
        keys = [hashlib.blake2b(t.encode(), digest_size=16).hexdigest() for t in texts]
        out: dict[int, float] = {}
        with self._lock:
            for i, key in enumerate(keys):
                if key in self._cache:
                    self._cache.move_to_end(key)
                    out[i] = self._cache[key]
        todo = [i for i in range(len(texts)) if i not in out]
        if todo:
            probs = self.linear.proba(self.features([texts[i] for i in todo]))
            with self._lock:
                for i, p in zip(todo, probs, strict=True):
                    out[i] = float(p)
                    self._cache[keys[i]] = float(p)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return [out[i] for i in range(len(texts))]
