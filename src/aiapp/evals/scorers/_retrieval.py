"""Retrieval scorers: hit@k, recall@k, MRR and nDCG@k against gold documents.

Gold documents come from the case's metadata (``sources``, ``source``, ``gold_ids`` or ``doc_ids``
by default) and are matched against each hit's ``source``, ``doc_id`` or ``chunk_id``. Paths match
when one ends with the other at a path boundary, so ``docs/faq.mdx`` finds ``ollama/docs/faq.mdx``.
A gold *section* is ``path#Heading``: it matches a hit from that document whose heading path
(``metadata.headings``) contains the heading, or whose text has it as a Markdown heading line (a
chunk that merged small sections), so a gold section survives re-chunking, unlike a chunk id.
"""

from __future__ import annotations

import math
import re
from typing import Any

from aiapp.evals._score import Sample, Score
from aiapp.evals.scorers._base import Scorer, scorer
from aiapp.types import Hit

_GOLD_FIELDS = ("sources", "source", "gold_ids", "doc_ids", "gold_sources")


def gold_of(sample: Sample, field: str | None) -> list[str]:
    """The gold document ids of a case."""
    meta: dict[str, Any] = sample.case.metadata
    value: Any = None
    if field is not None:
        value = meta.get(field)
    else:
        for name in _GOLD_FIELDS:
            if meta.get(name):
                value = meta[name]
                break
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _same(a: str, b: str) -> bool:
    a, b = a.strip("/"), b.strip("/")
    if a == b:
        return True
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer.endswith("/" + shorter)


_HEADING_LINE = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _in_section(hit: Hit, gold: str) -> bool:
    """Whether ``hit`` lies in the gold section ``path#Heading``."""
    path, sep, heading = gold.partition("#")
    if not sep or not path or not heading.strip():
        return False
    if not any(candidate and _same(candidate, path) for candidate in (hit.source, hit.doc_id)):
        return False
    wanted = _norm(heading)
    headings = hit.metadata.get("headings") or []
    if isinstance(headings, list | tuple) and any(_norm(str(h)) == wanted for h in headings):
        return True
    return any(_norm(m.group(1)) == wanted for m in _HEADING_LINE.finditer(hit.text))


def relevant(hit: Hit, gold: list[str]) -> str | None:
    """The gold id a hit matches, if any (a document, a chunk id or a ``path#Heading`` section)."""
    for g in gold:
        if any(candidate and _same(candidate, g) for candidate in (hit.source, hit.doc_id, hit.chunk_id)):
            return g
        if _in_section(hit, g):
            return g
    return None


class _RankScorer(Scorer):
    def __init__(self, *, k: int = 5, gold_field: str | None = None) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.gold_field = gold_field

    def _ranked(self, sample: Sample) -> tuple[list[str | None], list[str]] | Score:
        if sample.output.error is not None:
            return self.unscored(f"target failed: {sample.output.error}")
        gold = gold_of(sample, self.gold_field)
        if not gold:
            return self.unscored("case has no gold documents (metadata sources/gold_ids)")
        # A target that retrieves nothing still gets a score (0), but a target with no retrieval
        # at all cannot be scored on retrieval.
        if not sample.output.hits and sample.output.data.get("retrieval") is False:
            return self.unscored("target does not retrieve")
        # Each gold document counts once, at its best rank.
        seen: set[str] = set()
        matches: list[str | None] = []
        for hit in sample.output.hits[: self.k]:
            g = relevant(hit, gold)
            matches.append(g if g is not None and g not in seen else None)
            if g is not None:
                seen.add(g)
        return matches, gold


@scorer("hit_at_k")
class HitAtK(_RankScorer):
    """1 if any gold document is among the top ``k`` hits."""

    def __init__(self, *, k: int = 5, gold_field: str | None = None) -> None:
        super().__init__(k=k, gold_field=gold_field)
        self.threshold = 1.0

    def score(self, sample: Sample) -> Score:
        """Any gold in the top k."""
        ranked = self._ranked(sample)
        if isinstance(ranked, Score):
            return ranked
        matches, _ = ranked
        found = [m for m in matches if m]
        return self.make(
            float(bool(found)), f"found {found[0]} in top {self.k}" if found else f"no gold in top {self.k}"
        )


@scorer("recall_at_k")
class RecallAtK(_RankScorer):
    """Share of gold documents found in the top ``k`` hits."""

    def score(self, sample: Sample) -> Score:
        """Found gold / all gold."""
        ranked = self._ranked(sample)
        if isinstance(ranked, Score):
            return ranked
        matches, gold = ranked
        found = sum(1 for m in matches if m)
        return self.make(found / len(gold), f"{found}/{len(gold)} gold in top {self.k}")


@scorer("mrr")
class MRR(_RankScorer):
    """Reciprocal rank of the first gold document within the top ``k`` (0 when absent)."""

    def __init__(self, *, k: int = 10, gold_field: str | None = None) -> None:
        super().__init__(k=k, gold_field=gold_field)

    def score(self, sample: Sample) -> Score:
        """1 / rank of the first relevant hit."""
        ranked = self._ranked(sample)
        if isinstance(ranked, Score):
            return ranked
        matches, _ = ranked
        for rank, match in enumerate(matches, start=1):
            if match:
                return self.make(1.0 / rank, f"first gold at rank {rank}")
        return self.make(0.0, f"no gold in top {self.k}")


@scorer("ndcg_at_k")
class NDCGAtK(_RankScorer):
    """nDCG@k with binary relevance."""

    def __init__(self, *, k: int = 10, gold_field: str | None = None) -> None:
        super().__init__(k=k, gold_field=gold_field)

    def score(self, sample: Sample) -> Score:
        """DCG of the ranking over the ideal DCG."""
        ranked = self._ranked(sample)
        if isinstance(ranked, Score):
            return ranked
        matches, gold = ranked
        dcg = sum(1.0 / math.log2(rank + 1) for rank, m in enumerate(matches, start=1) if m)
        ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), self.k) + 1))
        return self.make(dcg / ideal if ideal else 0.0, f"DCG {dcg:.3f} / ideal {ideal:.3f}")
