"""Sentence choice for ``local/extractive`` by meaning as well as words (pure functions).

:mod:`aiapp.gateway.providers.local` splits the context into sentences and scores them lexically
(BM25 with heading, number and coverage signals); :func:`choose` then picks the answer with:

* **meaning**: the cosine between the question and each sentence read with its section heading
  (MiniLM, the embedder retrieval has already loaded), so "listen on all interfaces" meets "Change
  the bind address with OLLAMA_HOST" under "How can I expose Ollama on my network?" although they
  share no word;
* **concrete things**: a sentence that names an environment variable, a flag, a command in
  backticks, an address, a port or another value gets a bonus, because a support answer is the
  thing to set, not the sentence that only talks about it;
* **no repeats**: a sentence already chosen (the same text from two overlapping chunks) is never
  chosen again; the first citation is kept.

It stays an honest extractive baseline: the answer is the context's own sentences with their
``[n]`` citations, and whether the context answers at all is still decided by lexical coverage
(the abstention gate in ``local.py``), so meaning changes which sentences are quoted, not whether.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

__all__ = ["Embed", "MeaningScorer", "SentenceLike", "choose", "is_concrete", "similarities"]

Embed = Callable[[Sequence[str]], "np.ndarray"]

_MEANING_MIN, _MEANING_MAX = 0.3, 0.7  # weight of meaning, by how poorly words cover the question
_BM25_SHARE = 0.25  # BM25 relative to the best prose sentence's, as a share of the words' weight
_CONCRETE_BONUS = 0.15  # added for a sentence naming a variable, flag, command or value
_NEIGHBOUR_BONUS = 0.1  # added to the sentences next to the best one (same source)
_RELATIVE = 0.7  # further sentences must score at least this share of the best
_MIN_COVERAGE_EXTRA = 0.1  # lexical share a further sentence needs, unless its meaning is close
_MEANING_EXTRA = 0.75  # ... close: at least this share of the best cosine
_MIN_COVERAGE_CODE = 0.5  # a code line nothing introduces needs this lexical share

_CONCRETE_RE = re.compile(
    r"`[^`\s][^`]*`"  # inline code: a command, a file, a setting
    r"|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b"  # an environment variable: OLLAMA_HOST
    r"|(?<![\w-])--?[a-z][\w-]*"  # a flag: --host, -p
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"  # an address: 0.0.0.0:11434
    r"|\bport\s+\d+|:\d{2,5}\b"  # a port
    r"|\b\d+(?:\.\d+)?\s?(?:GB|MB|KB|ms|s|m|h|%)\b"  # a value with a unit
)
_BATCH = 8  # sentences per forward pass
_CACHE_SIZE = 8192  # sentence vectors kept per model (evals and chats see the same chunks again)
_NORMALIZE_RE = re.compile(r"\W+")
_DIGIT_RE = re.compile(r"\d")


class SentenceLike(Protocol):
    """What :func:`choose` reads of a sentence (``local._Sentence`` has it)."""

    @property
    def text(self) -> str: ...
    @property
    def source(self) -> int | None: ...
    @property
    def candidate(self) -> bool: ...
    @property
    def code(self) -> bool: ...
    @property
    def heading(self) -> str: ...


def is_concrete(text: str) -> bool:
    """Whether ``text`` names a variable, flag, inline command, address, port or value with a unit."""
    return _CONCRETE_RE.search(text) is not None


def similarities(question: str, texts: Sequence[str], embed: Embed) -> list[float]:
    """Cosine of ``question`` to each text (the embedder returns L2-normalized rows)."""
    if not texts:
        return []
    vectors = np.asarray(embed([question, *texts]), dtype=np.float32)
    return [float(x) for x in vectors[1:] @ vectors[0]]


def _with_heading(sentence: SentenceLike) -> str:
    """The sentence as its section reads it: "How can I expose Ollama? Ollama binds 127.0.0.1 ..."."""
    heading = getattr(sentence, "heading", "").strip()
    return f"{heading}\n{sentence.text}" if heading else sentence.text


def _key(text: str) -> str:
    return _NORMALIZE_RE.sub(" ", text.lower()).strip()


def choose(
    sentences: Sequence[SentenceLike],
    lexical: Sequence[float],
    coverage: Sequence[float],
    meaning: Sequence[float],
    limit: int,
    *,
    numeric: bool = False,
) -> list[int]:
    """Indexes of the sentences to answer with, in context order.

    Args:
        sentences: The context's sentences.
        lexical: Each one's lexical score (0 for sentences that may not be returned).
        coverage: Each one's share of the question's IDF-weighted terms.
        meaning: Each one's cosine to the question.
        limit: Most sentences to return.
        numeric: The question asks for a number ("how many", "when"): a number is a concrete answer.

    The caller has already decided that the context answers the question (lexical gate).
    """
    n = len(sentences)
    eligible = [i for i in range(n) if sentences[i].candidate and (lexical[i] > 0 or not sentences[i].code)]
    if not eligible:
        return []
    # Lexical scores relative to the best prose sentence: a code line matching one rare word
    # ("listen 80;") must not shrink every sentence's share.
    top_lexical = max((lexical[i] for i in eligible if not sentences[i].code), default=0.0) or max(
        (lexical[i] for i in eligible), default=1.0
    )
    # Meaning relative to the context's own range (MiniLM cosines of short sentences are small and
    # vary by topic), squared so that only the closest sentences gain much.
    cosines = [meaning[i] for i in eligible if not sentences[i].code] or [0.0]
    floor = min(cosines)
    spread = max(max(cosines) - floor, 1e-6)
    # Meaning weighs more when the question's words are poorly covered by any sentence (the words
    # of "listen on all interfaces" are nowhere; those of "when was construction finished" are).
    top_coverage = max((coverage[i] for i in eligible), default=0.0)
    alpha = min(max(1.0 - top_coverage, _MEANING_MIN), _MEANING_MAX)
    combined = [0.0] * n
    for i in eligible:
        # A code line's meaning is not comparable to prose (MiniLM reads "listen 80;" as an answer).
        relevant = 0.0 if sentences[i].code else (max(meaning[i] - floor, 0.0) / spread) ** 2
        # Words count by how much of the question they cover (a sentence matching only "server"
        # covers little), BM25 breaks ties among sentences that cover alike.
        words = coverage[i] + _BM25_SHARE * min(lexical[i] / top_lexical, 1.0)
        score = (1.0 - alpha) * words + alpha * relevant
        if score > 0 and (
            is_concrete(sentences[i].text) or (numeric and _DIGIT_RE.search(sentences[i].text))
        ):
            score += _CONCRETE_BONUS
        combined[i] = score
    best = max(eligible, key=lambda i: (combined[i], -i))
    if combined[best] <= 0:
        return []
    for i in (best - 1, best + 1):
        if 0 <= i < n and combined[i] > 0 and sentences[i].source == sentences[best].source:
            combined[i] += _NEIGHBOUR_BONUS * combined[best]
    chosen = [best]
    seen = {_key(sentences[best].text)}
    follow = best + 1
    if (
        sentences[best].text.endswith(":")
        and follow < n
        and sentences[follow].source == sentences[best].source
    ):
        chosen.append(follow)  # "set the variable:" introduces the code line or list item after it
        seen.add(_key(sentences[follow].text))
    top_meaning = max(meaning[best], 1e-6)
    for i in sorted(eligible, key=lambda i: (-combined[i], i)):
        if len(chosen) >= limit or combined[i] < _RELATIVE * combined[best]:
            break
        key = _key(sentences[i].text)
        if i in chosen or key in seen or sentences[i].text.endswith(":"):
            continue  # a further sentence that introduces a code block would dangle without it
        if sentences[i].code:
            supported = coverage[i] >= _MIN_COVERAGE_CODE
        else:
            supported = coverage[i] >= _MIN_COVERAGE_EXTRA or meaning[i] >= _MEANING_EXTRA * top_meaning
        if supported:
            chosen.append(i)
            seen.add(key)
    return sorted(chosen[:limit])


class MeaningScorer:
    """Each sentence's cosine to the question, with the local MiniLM loaded on first use.

    Args:
        embedder: Anything with ``embed(texts) -> rows``; default: the ONNX MiniLM when onnxruntime
            is installed (the process shares one loaded model with retrieval). Without it, or with
            ``enabled=False``, the model scores by words alone. torch is never loaded for this.
        enabled: Use meaning at all.
    """

    def __init__(self, embedder: object | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._embedder = embedder
        self._resolved = embedder is not None
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> vector, most recent last

    def _embed(self) -> Embed | None:
        if not self._resolved:
            self._resolved = True
            from aiapp.gateway.embedders import _onnx_available, build_embedder

            if _onnx_available():
                try:
                    self._embedder = build_embedder(runtime="onnx")
                except Exception:  # a broken install: words alone still answer
                    self._embedder = None
        embed = getattr(self._embedder, "embed", None)
        return embed if callable(embed) else None

    def __call__(self, question: str, sentences: Sequence[SentenceLike]) -> list[float] | None:
        """Cosines for ``sentences`` (0 for code lines and non-candidates), or ``None`` without a model."""
        if not self.enabled or not sentences:
            return None
        embed = self._embed()
        if embed is None:
            return None
        wanted = [i for i, s in enumerate(sentences) if s.candidate and not s.code]
        texts = [_with_heading(sentences[i]) for i in wanted]
        vectors = self._embed_cached([question, *texts], embed)
        out = [0.0] * len(sentences)
        for i, text in zip(wanted, texts, strict=True):
            out[i] = float(vectors[text] @ vectors[question])
        return out

    def _embed_cached(self, texts: Sequence[str], embed: Embed) -> dict[str, np.ndarray]:
        """Vectors of the distinct ``texts``, embedding only those not seen recently (an LRU)."""
        out: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            vector = self._vectors.get(text)
            if vector is None:
                missing.append(text)
            else:
                self._vectors.move_to_end(text)
                out[text] = vector
        # Small batches: a context's sentences are short, and one batch of all of them would grow
        # the runtime's memory arena by ~60 MB for the rest of the process (what `aiapp ask` peaks at).
        for start in range(0, len(missing), _BATCH):
            batch = missing[start : start + _BATCH]
            for text, vector in zip(batch, np.asarray(embed(batch), dtype=np.float32), strict=True):
                out[text] = vector
                self._vectors[text] = vector
        if missing:
            while len(self._vectors) > _CACHE_SIZE:
                self._vectors.popitem(last=False)
        return out
