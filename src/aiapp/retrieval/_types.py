"""Values the retrieval layer passes around: documents, ingest reports, search modes and filters."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SearchMode = Literal["hybrid", "dense", "sparse"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "dense", "sparse")

#: A payload filter: ``{"tags": "gpu"}`` (equals), ``{"source": ["faq.mdx", "gpu.mdx"]}`` (any of),
#: ``{"modified": {"gte": 1.7e9}}`` (range). Conditions on several keys must all hold.
FilterSpec = Mapping[str, Any]

#: ``progress(phase, done, total)``: phases are ``load``, ``chunk``, ``embed`` and ``write``.
Progress = Callable[[str, int, int], None]


class Document(BaseModel):
    """One document of a corpus, as loaded from a file or given directly.

    Attributes:
        source: Path relative to the corpus root (or any stable id); the document's identity.
        text: The document's text (Markdown for ``kind="markdown"``).
        title: Title (front matter, first heading, ``<title>``, PDF metadata, or the file name).
        kind: ``markdown`` is split on headings first; ``text`` only by sentences.
        modified: The file's modification time (seconds since the epoch), when known.
        metadata: Headings, front-matter fields, user ``tags`` ... (stored with every chunk).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(min_length=1)
    text: str
    title: str | None = None
    kind: Literal["markdown", "text"] = "text"
    modified: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def content_hash(self) -> str:
        """Hash of what the index stores for this document (the modification time is left out)."""
        payload = json.dumps(
            [self.text, self.title, self.kind, self.metadata], sort_keys=True, default=str, ensure_ascii=False
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    @property
    def tags(self) -> list[str]:
        """User tags from front matter (``tags: [a, b]`` or ``tags: a``)."""
        raw = self.metadata.get("tags")
        if raw is None:
            return []
        if isinstance(raw, str):
            return [raw]
        if isinstance(raw, list | tuple):
            return [str(t) for t in raw]
        return [str(raw)]


class SkippedFile(BaseModel):
    """A file the loader did not index, and why."""

    model_config = ConfigDict(frozen=True)

    path: str
    reason: str


class IngestReport(BaseModel):
    """What one ingest did.

    Attributes:
        index: The index name.
        corpus: The corpus root (or ``<documents>`` for documents passed directly).
        added: Documents new to the index.
        changed: Documents whose content changed (re-chunked and re-embedded).
        removed: Documents gone from the corpus (their chunks deleted).
        unchanged: Documents left as they were.
        chunks_total: Chunks in the index after this ingest.
        chunks_embedded: Chunks embedded by this ingest.
        embeddings_cached: Of those, how many came from the embedding cache.
        corpus_version: Hash of the committed manifest (what hits carry as ``corpus_version``).
        previous_version: The version before this ingest, if any.
        rebuilt: Whether the index was rebuilt from scratch.
        reason: Why it was rebuilt (``new index``, ``embedding model changed ...``).
        skipped: Files that were not indexed (binary, undecodable, unreadable), naming each.
        warnings: Other problems worth reading (bad front matter ...).
        duration_s: Wall time of the ingest.
    """

    model_config = ConfigDict(extra="forbid")

    index: str
    corpus: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_total: int = 0
    chunks_embedded: int = 0
    embeddings_cached: int = 0
    corpus_version: str = ""
    previous_version: str | None = None
    rebuilt: bool = False
    reason: str | None = None
    skipped: list[SkippedFile] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    duration_s: float = 0.0

    @property
    def modified(self) -> bool:
        """Whether this ingest committed a new version."""
        return self.corpus_version != self.previous_version
