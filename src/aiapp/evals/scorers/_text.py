"""Text normalization shared by deterministic scorers (SQuAD-style answer normalization)."""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@lru_cache(maxsize=4096)
def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace.

    Memoized: each case's prediction and reference are normalized by every text scorer in turn.
    """
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """Normalized answer tokens."""
    return normalize_answer(text).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token-overlap F1 between two texts."""
    pred, ref = _token_counts(prediction), _token_counts(reference)
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((pred & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / pred.total(), overlap / ref.total()
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=4096)
def _token_counts(text: str) -> Counter[str]:
    # Shared by every call with the same text: callers must not mutate it.
    return Counter(tokens(text))


def numbers(text: str) -> list[float]:
    """Every number in ``text`` (thousands separators allowed)."""
    out = []
    for match in _NUMBER.findall(text):
        try:
            out.append(float(match.replace(",", "")))
        except ValueError:
            continue
    return out


def references(expected: object) -> list[str]:
    """An expected value as a list of acceptable reference strings."""
    if expected is None:
        return []
    if isinstance(expected, list | tuple):
        return [str(item) for item in expected]
    return [str(expected)]
