"""Chunking with llama-index-core's node parsers (the only module that imports llama-index).

Markdown documents are split on headings (``MarkdownNodeParser``), small neighbouring sections are
merged, and long sections are split by sentences (``SentenceSplitter``) — all sized in the
embedding model's own tokens, so a chunk never overflows the model's window. Every chunk's embedded
text starts with the document title and its heading path, which is what lets a short chunk be
found by what its document is about. Chunk ids are stable: source path + content hash.
"""

from __future__ import annotations

import bisect
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiapp.retrieval._types import Document

#: Bump when the chunking algorithm changes: indexes built with another version are rebuilt.
CHUNKER_VERSION = "md-sentence/2"
_POINT_NS = uuid.UUID("6f1c7c2e-5d0e-4d8e-9f3a-2b7f4f0c9a11")
_SPECIAL_TOKENS = 2  # [CLS] and [SEP] that the model adds around every text

Spans = list[tuple[int, int]]


class TokenCounter:
    """Counts a model's tokens; with ``spans`` it can count substrings of a text encoded once.

    Args:
        count: Tokens in a text.
        spans: Character (start, end) of every token of a text, when the tokenizer reports offsets.
    """

    def __init__(self, count: Callable[[str], int], spans: Callable[[str], Spans] | None = None) -> None:
        self.count = count
        self.spans = spans


@dataclass
class Chunk:
    """One chunk of a document, ready to embed and store.

    Attributes:
        chunk_id: ``<source>#<hash of the embedded text>`` (``-2``, ``-3`` ... for repeats).
        point_id: A UUID derived from ``chunk_id`` (what the vector store keys on).
        source: The document's source path.
        text: The chunk's own text (what a hit shows).
        embed_text: What gets embedded and BM25-indexed: title, heading path, then the text.
        ordinal: Position in the document.
        headings: Heading path of the section the chunk starts in.
    """

    chunk_id: str
    point_id: str
    source: str
    text: str
    embed_text: str
    ordinal: int
    headings: list[str] = field(default_factory=list)


def point_id_for(chunk_id: str) -> str:
    """The store's point id for a chunk id (a UUID5, stable across runs)."""
    return str(uuid.uuid5(_POINT_NS, chunk_id))


class Chunker:
    """Split documents into chunks of at most ``chunk_tokens`` model tokens.

    Args:
        chunk_tokens: Maximum tokens per embedded chunk text, title and headings included.
        chunk_overlap: Tokens shared by consecutive pieces of one long section.
        tokens: Counts tokens in the embedding model's tokenizer (see :func:`token_counter`).
    """

    def __init__(self, *, chunk_tokens: int, chunk_overlap: int, tokens: TokenCounter) -> None:
        self.chunk_tokens = chunk_tokens
        self.chunk_overlap = chunk_overlap
        self._tokens = tokens
        self._splitters: dict[int, Any] = {}
        self._markdown: Any = None
        self._focus: tuple[str, list[int], list[int]] | None = None
        self._span_cache: dict[str, Spans] = {}

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        if self._tokens.spans is not None and len(text) > 200:
            return len(self._spans(text))
        return self._tokens.count(text)

    def _spans(self, text: str) -> Spans:
        spans = self._span_cache.get(text)
        if spans is None and self._tokens.spans is not None:
            spans = self._tokens.spans(text)
            self._span_cache[text] = spans
        return spans or []

    def _split(self, body: str, budget: int) -> list[str]:
        """Sentence-split ``body``; the splitter's many token counts are read off one encoding of it."""
        spans = self._spans(body) if self._tokens.spans is not None else None
        self._focus = (body, [a for a, _ in spans], [b for _, b in spans]) if spans is not None else None
        try:
            return [p.strip() for p in self._splitter(budget).split_text(body) if p.strip()]
        finally:
            self._focus = None

    def _splitter_tokens(self, piece: str) -> list[int]:
        """Tokens of a piece of the body being split (overlapping tokens counted: never too few)."""
        focus = self._focus
        if focus is not None and piece:
            body, starts, ends = focus
            at = body.find(piece)
            if at >= 0:
                lo = bisect.bisect_right(ends, at)
                hi = bisect.bisect_left(starts, at + len(piece))
                return [0] * max(hi - lo, 0)
        return [0] * self.count(piece)

    def chunk(self, doc: Document) -> list[Chunk]:
        """The chunks of one document, in order."""
        try:
            return self._chunk(doc)
        finally:
            self._span_cache.clear()

    def _chunk(self, doc: Document) -> list[Chunk]:
        title = (doc.title or "").strip()
        sections = self._sections(doc) if doc.kind == "markdown" else [([], doc.text.strip())]
        pieces: list[tuple[list[str], str]] = []
        for headings, body, size in self._merge(title, sections):
            budget = self.chunk_tokens - _SPECIAL_TOKENS - self._prefix_tokens(title, headings)
            if size <= budget:
                pieces.append((headings, body))
                continue
            pieces.extend((headings, part) for part in self._split(body, max(budget, 32)))
        chunks: list[Chunk] = []
        seen: dict[str, int] = {}
        for ordinal, (headings, body) in enumerate(pieces):
            embed_text = _prefix(title, headings) + body
            digest = hashlib.sha256(embed_text.encode()).hexdigest()[:12]
            chunk_id = f"{doc.source}#{digest}"
            seen[chunk_id] = seen.get(chunk_id, 0) + 1
            if seen[chunk_id] > 1:
                chunk_id = f"{chunk_id}-{seen[chunk_id]}"
            chunks.append(
                Chunk(
                    chunk_id=chunk_id,
                    point_id=point_id_for(chunk_id),
                    source=doc.source,
                    text=body,
                    embed_text=embed_text,
                    ordinal=ordinal,
                    headings=headings,
                )
            )
        return chunks

    def _prefix_tokens(self, title: str, headings: list[str]) -> int:
        prefix = _prefix(title, headings)
        return self.count(prefix) if prefix else 0

    def _sections(self, doc: Document) -> list[tuple[list[str], str]]:
        """Markdown sections as (heading path, text) with llama-index's Markdown parser."""
        from llama_index.core.schema import Document as LlamaDocument

        if self._markdown is None:
            from llama_index.core.node_parser import MarkdownNodeParser

            self._markdown = MarkdownNodeParser(include_metadata=True, include_prev_next_rel=False)
        nodes = self._markdown.get_nodes_from_documents([LlamaDocument(text=doc.text)])
        out: list[tuple[list[str], str]] = []
        for node in nodes:
            text = node.get_content().strip()
            if not text:
                continue
            parents = [h for h in str(node.metadata.get("header_path", "/")).split("/") if h]
            first, _, rest = text.partition("\n")
            if first.startswith("#"):
                heading = first.lstrip("#").strip()
                out.append(([*parents, heading] if heading else parents, rest.strip()))
            else:
                out.append((parents, text))
        return out

    def _merge(self, title: str, sections: list[tuple[list[str], str]]) -> list[tuple[list[str], str, int]]:
        """Merge neighbouring small sections while they fit one chunk, keeping sub-headings inline.

        Returns (heading path shared by the merged sections, text, tokens in the text). Token counts
        are added up per piece (WordPiece splits on whitespace, so counts of joined texts add up).
        """
        # [shared path, text, tokens, path of the last section, path of the first section]
        merged: list[list[Any]] = []
        for headings, body in sections:
            size = self.count(body) if body else 0
            if merged:
                last = merged[-1]
                if not last[1]:  # a bare heading: this section's path already names it
                    merged[-1] = [headings, body, size, headings, headings]
                    continue
                shared = _common_prefix(last[0], headings)
                opened = _common_prefix(last[3], headings)
                subheadings = _heading_lines(headings, len(opened))
                lead = _heading_lines(last[4], len(shared))  # the first section's headings, now inline
                extra = size + (self.count(subheadings) if subheadings else 0)
                lead_size = self.count(lead) if lead else 0
                if (
                    self._prefix_tokens(title, shared) + lead_size + last[2] + extra + _SPECIAL_TOKENS
                    <= self.chunk_tokens
                ):
                    text = "\n\n".join(p for p in (last[1], subheadings, body) if p)
                    merged[-1] = [shared, text, last[2] + extra, headings, last[4]]
                    continue
            merged.append([headings, body, size, headings, headings])
        out: list[tuple[list[str], str, int]] = []
        for shared, text, size, _, first in merged:
            if not text.strip():
                continue
            lead = _heading_lines(first, len(shared))
            if lead:
                text, size = f"{lead}\n\n{text}", size + self.count(lead)
            out.append((shared, text, size))
        return out

    def _splitter(self, budget: int) -> Any:
        splitter = self._splitters.get(budget)
        if splitter is None:
            from llama_index.core.node_parser import SentenceSplitter

            splitter = SentenceSplitter(
                chunk_size=budget,
                chunk_overlap=min(self.chunk_overlap, budget // 4),
                tokenizer=self._splitter_tokens,
                include_metadata=False,
                include_prev_next_rel=False,
            )
            self._splitters[budget] = splitter
        return splitter


def _prefix(title: str, headings: list[str]) -> str:
    parts = [title] if title else []
    parts += [h for h in headings if h and h != title]
    return " > ".join(parts) + "\n\n" if parts else ""


def _heading_lines(path: list[str], depth: int) -> str:
    """Markdown heading lines for ``path[depth:]`` (levels continue from ``depth``)."""
    return "\n".join("#" * (depth + i + 1) + " " + h for i, h in enumerate(path[depth:]))


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    out: list[str] = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return out


def token_counter(embedder: Any) -> TokenCounter:
    """Count tokens the way ``embedder`` does.

    Uses the model's Rust tokenizer directly when it has one, or is one (a copy without padding or truncation,
    with offsets), its Python tokenizer otherwise, and ``embedder.count_tokens`` as the last resort.
    """
    hf = getattr(embedder, "tokenizer", None)
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None and hasattr(hf, "encode_batch") and hasattr(hf, "to_str"):
        backend = hf  # already a Rust ``tokenizers.Tokenizer`` (the ONNX embedder's)
    if backend is not None:
        fast = backend.__class__.from_str(backend.to_str())
        fast.no_padding()
        fast.no_truncation()

        def count_fast(text: str) -> int:
            return len(fast.encode(text, add_special_tokens=False).ids)

        def spans(text: str) -> Spans:
            return [(int(a), int(b)) for a, b in fast.encode(text, add_special_tokens=False).offsets]

        return TokenCounter(count_fast, spans)
    if hf is not None:
        return TokenCounter(lambda text: len(hf.encode(text, add_special_tokens=False)))
    return TokenCounter(lambda text: int(embedder.count_tokens(text)))
