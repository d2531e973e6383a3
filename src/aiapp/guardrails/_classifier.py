"""The prompt-injection classifier: logistic regressions over MiniLM embeddings and hashed n-grams.

Texts are first normalized (:func:`prepare`: NFKC, zero-width characters dropped, s p a c e d
letters joined) so trivial obfuscation does not change their features. Two linear models ship:

* ``lite`` reads hashed character 3-5-grams and word unigrams of the lower-cased text (4,096
  buckets, CRC-32, L2-normalized): no embedding model, a fraction of a millisecond. The n-grams
  carry the phrasing MiniLM, an English model, blurs in German or Spanish.
* ``full`` reads the text's all-MiniLM-L6-v2 embedding, the element-wise maximum of its sentences'
  embeddings (an injection appended to a long benign question is one sentence of several, and
  mean pooling dilutes it) and the same n-grams.

``auto`` (the default) is a cascade: ``lite`` decides when it is confident (probability below
``auto_low`` or above ``auto_high``), and ``full`` decides the rest. Its bounds are the narrowest
whose cross-validated F1 on the training split is at least ``full``'s own, so most inputs skip
the embedding (the latency budget) without losing accuracy to always embedding. ``accurate`` is
the same cascade with the bounds that maximize cross-validated F1: better on held-out data, but
it embeds roughly half of all inputs.

The weights ship in ``aiapp/guardrails/data/injection_lr.npz``, written by
``scripts/train_injection_classifier.py`` from ``prompt_injection_deepset/train.jsonl`` alone.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
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

__all__ = [
    "HASH_DIM",
    "InjectionClassifier",
    "InjectionWeights",
    "LinearModel",
    "full_features",
    "hashed_features",
    "lite_features",
    "load_weights",
    "prepare",
    "sentences",
]

HASH_DIM = 4096
EMBED_DIM = 384
FULL_DIM = 2 * EMBED_DIM + HASH_DIM
ModelKind = Literal["auto", "accurate", "full", "lite"]
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_NGRAMS = (3, 4, 5)
_SPACED_LETTERS = re.compile(r"\b(?:\w ){4,}\w\b")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\s*(?:\n|\\n)+\s*")
_MAX_SENTENCES = 12

Matrix = npt.NDArray[np.float32]


def prepare(text: str) -> str:
    """The text detectors read: NFKC-normalized, invisible format characters (zero-width spaces,
    bidi marks) removed, and runs of single spaced letters (``s a y  t h i s``) joined."""
    if not text.isascii():  # ASCII is NFKC-stable and has no format characters: skip the char scan
        text = unicodedata.normalize("NFKC", text)
        if any(unicodedata.category(c) == "Cf" for c in text):
            text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _SPACED_LETTERS.sub(lambda m: m.group(0).replace(" ", ""), text)


def sentences(text: str) -> list[str]:
    """The text's sentences (at most 12: the first 11 and the last), or the text itself when one."""
    parts = [p.strip() for p in _SENTENCE_END.split(text) if p and p.strip()]
    if len(parts) > _MAX_SENTENCES:
        parts = parts[: _MAX_SENTENCES - 1] + parts[-1:]
    return parts or [text]


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


def lite_features(texts: Sequence[str]) -> Matrix:
    """Rows for the ``lite`` model: hashed n-grams of the prepared texts."""
    return hashed_features([prepare(t) for t in texts])


def full_features(texts: Sequence[str], embedder: Embedder) -> Matrix:
    """Rows for the ``full`` model: [text embedding, max over sentence embeddings, n-grams]."""
    return _full_rows([prepare(t) for t in texts], embedder)


def _full_rows(prepared: Sequence[str], embedder: Embedder, hashed: Matrix | None = None) -> Matrix:
    """:func:`full_features` of already prepared texts (``hashed``: their n-grams, if computed)."""
    batch: list[str] = []
    spans: list[tuple[int, int]] = []
    for text in prepared:
        parts = sentences(text)
        start = len(batch)
        batch.append(text)
        if len(parts) > 1:  # one sentence: its embedding is the text's
            batch.extend(parts)
        spans.append((start, len(batch)))
    vectors = np.asarray(embedder.embed(batch, kind="query"), dtype=np.float32)
    whole = np.stack([vectors[a] for a, _ in spans])
    pooled = np.stack([vectors[a + 1 : b].max(axis=0) if b - a > 1 else vectors[a] for a, b in spans])
    return np.hstack([whole, pooled, hashed_features(prepared) if hashed is None else hashed])


def default_weights_path() -> Path:
    """Where the shipped weights live."""
    return Path(str(resources.files("aiapp.guardrails") / "data" / "injection_lr.npz"))


@dataclass(frozen=True)
class InjectionWeights:
    """Both linear models and the cascades' bounds on the ``lite`` probability."""

    lite: LinearModel
    full: LinearModel
    #: ``(low, high)`` per cascade: ``auto`` and ``accurate``.
    bounds: dict[str, tuple[float, float]]


def load_weights(path: Path | None = None) -> InjectionWeights:
    """Load the models written by ``scripts/train_injection_classifier.py``."""
    path = path or default_weights_path()
    try:
        with np.load(path, allow_pickle=False) as data:
            models = {
                kind: LinearModel(
                    w=np.asarray(data[f"{kind}_w"], dtype=np.float32),
                    b=float(data[f"{kind}_b"]),
                    threshold=float(data[f"{kind}_threshold"]),
                )
                for kind in ("full", "lite")
            }
            weights = InjectionWeights(
                lite=models["lite"],
                full=models["full"],
                bounds={
                    kind: (float(data[f"{kind}_low"]), float(data[f"{kind}_high"]))
                    for kind in ("auto", "accurate")
                },
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"cannot load injection classifier weights: {exc}; "
            "re-create them with scripts/train_injection_classifier.py",
            path=str(path),
        ) from exc
    if weights.full.w.shape != (FULL_DIM,) or weights.lite.w.shape != (HASH_DIM,):
        raise ConfigError(
            f"injection classifier weights have shapes {weights.full.w.shape} (full) and "
            f"{weights.lite.w.shape} (lite), expected ({FULL_DIM},) and ({HASH_DIM},); "
            "re-create them with scripts/train_injection_classifier.py",
            path=str(path),
        )
    return weights


class InjectionClassifier:
    """Scores texts for prompt injection. Thread-safe; one instance can serve a whole process.

    Args:
        model: ``auto`` (default: ``lite`` when it is confident, else ``full``), ``accurate``
            (the same cascade, handing more texts to ``full``), ``full`` (embeddings + n-grams
            always) or ``lite`` (n-grams only, no embedding model).
        embedder: The embedder for ``full`` (default: the local MiniLM, loaded on first use).
        weights: An ``.npz`` of weights (default: the shipped file).
        threshold: Override the decision threshold chosen on the training data's validation folds.
        cache_size: Scores kept for recently seen texts (a chat resends earlier turns).
    """

    def __init__(
        self,
        *,
        model: ModelKind = "auto",
        embedder: Embedder | None = None,
        weights: Path | None = None,
        threshold: float | None = None,
        cache_size: int = 1024,
    ) -> None:
        if model not in ("auto", "accurate", "full", "lite"):
            raise ConfigError(f"unknown injection model {model!r} (known: auto, accurate, full, lite)")
        self.kind: ModelKind = model
        self.weights = load_weights(weights)
        # A cascade returns lite's probability only outside its (low, high), which brackets full's
        # threshold, so full's threshold is the cascade's too.
        own = self.weights.lite if model == "lite" else self.weights.full
        self.threshold = own.threshold if threshold is None else threshold
        self._embedder = embedder
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._cache_size = cache_size
        #: How many texts the cascade sent on to the full model (for benchmarks and dashboards).
        self.escalated = 0

    @property
    def embedder(self) -> Embedder:
        """The embedder (built on first use)."""
        with self._lock:
            if self._embedder is None:
                from aiapp.gateway.embedders import build_embedder

                self._embedder = build_embedder()
            return self._embedder

    def _compute(self, texts: list[str]) -> list[float]:
        prepared = [prepare(t) for t in texts]  # once, for both models of a cascade
        if self.kind == "full":
            return [float(p) for p in self.weights.full.proba(_full_rows(prepared, self.embedder))]
        hashed = hashed_features(prepared)
        probs = [float(p) for p in self.weights.lite.proba(hashed)]
        if self.kind == "lite":
            return probs
        low, high = self.weights.bounds[self.kind]
        unsure = [i for i, p in enumerate(probs) if low <= p <= high]
        if unsure:
            rows = _full_rows([prepared[i] for i in unsure], self.embedder, hashed[unsure])
            for i, p in zip(unsure, self.weights.full.proba(rows), strict=True):
                probs[i] = float(p)
            with self._lock:
                self.escalated += len(unsure)
        return probs

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
            probs = self._compute([texts[i] for i in todo])
            with self._lock:
                for i, p in zip(todo, probs, strict=True):
                    out[i] = float(p)
                    self._cache[keys[i]] = float(p)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return [out[i] for i in range(len(texts))]
