"""``Index``: open an index by name, ingest a corpus into it, search it."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiapp.config import RetrievalSettings, Settings, load_settings
from aiapp.errors import ConfigError, InputError
from aiapp.gateway.embedders import Embedder, build_embedder
from aiapp.retrieval._chunking import Chunker, token_counter
from aiapp.retrieval._embedding import EmbeddingCache
from aiapp.retrieval._ingest import IngestJob, run_ingest
from aiapp.retrieval._loaders import load_corpus
from aiapp.retrieval._manifest import IndexDir, Manifest
from aiapp.retrieval._types import SEARCH_MODES, Document, FilterSpec, IngestReport, Progress, SearchMode
from aiapp.retrieval.stores import Fusion, Shard, Store, StoreHit, build_sparse_encoder, build_store
from aiapp.tracing import Tracer
from aiapp.types import Hit

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HIT_FIELDS = {"text", "source", "doc_id", "chunk_id", "title", "metadata"}


class Index:
    """A searchable index of one corpus, stored under ``$AIAPP_HOME/indexes/<name>/``.

    Satisfies :class:`aiapp.types.Retriever`, so apps and agents can take it directly. Use
    :meth:`open` rather than the constructor.

    Args:
        name: The index name (letters, digits, ``_``, ``-``, ``.``).
        settings: Loaded settings (``retrieval:`` section and ``AIAPP_HOME``).
        embedder: Overrides the embedder named in the settings (tests, custom models).
        tracer: When given, every search records a ``retrieval`` span.
    """

    def __init__(
        self,
        name: str,
        *,
        settings: Settings,
        embedder: Embedder | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise InputError(f"invalid index name {name!r}: use letters, digits, '_', '-' and '.'")
        self.name = name
        self.settings = settings
        self.config: RetrievalSettings = settings.retrieval
        self.tracer = tracer
        self.directory = IndexDir(settings.home / "indexes" / name)
        self._embedder = embedder
        self._store: Store | None = None
        self._shard: Shard | None = None
        self._shard_version: str | None = None
        self._manifest: Manifest | None = None
        self._sparse: Any = None
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls,
        name: str | None = None,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        tracer: Tracer | None = None,
    ) -> Index:
        """Open (or prepare to create) the index ``name`` (default: ``retrieval.default_corpus``).

        Args:
            name: Index name; ``aiapp index NAME`` fills it from ``corpora/NAME/``.
            settings: Settings to use (default: :func:`aiapp.config.load_settings`).
            embedder: Overrides the configured embedder.
            tracer: Records a ``retrieval`` span per search.
        """
        settings = settings or load_settings()
        return cls(
            name or settings.retrieval.default_corpus, settings=settings, embedder=embedder, tracer=tracer
        )

    # -- properties ---------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The embedding model (built from settings on first use; nothing loads before that)."""
        if self._embedder is None:
            self._embedder = build_embedder(
                self.config.embedder,
                api_base=self.config.embedder_api_base,
                api_key_env=self.config.embedder_api_key_env,
                runtime=self.config.embedder_runtime,
            )
        return self._embedder

    @property
    def store(self) -> Store:
        """The vector store backend."""
        if self._store is None:
            self._store = build_store(self.name, self.config, self.directory.root)
        return self._store

    @property
    def manifest(self) -> Manifest | None:
        """The published manifest (``None`` before the first ingest)."""
        return self.directory.current()

    @property
    def corpus_version(self) -> str | None:
        """The published corpus version."""
        manifest = self.manifest
        return manifest.version if manifest else None

    def corpus_dir(self, corpus: str | None = None) -> Path:
        """The folder of ``corpus`` (default: this index's name) under ``retrieval.corpora_dir``."""
        return self.config.corpora_dir / (corpus or self.name)

    # -- ingest -------------------------------------------------------------------------------

    def ingest(
        self,
        source: str | Path | Iterable[Document] | None = None,
        *,
        rebuild: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Bring the index up to date with a corpus, re-embedding only what changed.

        Args:
            source: A corpus folder, a corpus name under ``corpora_dir``, or documents
                (the complete corpus: documents absent from it are removed). Default: the folder
                named after this index.
            rebuild: Re-embed everything even if nothing changed.
            progress: ``progress(phase, done, total)`` callback.

        Raises:
            InputError: the corpus folder does not exist, or another process is ingesting.
        """
        skipped: list[Any] = []
        warnings: list[str] = []
        if source is None or isinstance(source, str | Path):
            root = self._resolve_corpus(source)
            loaded = load_corpus(
                root,
                include=self.config.include,
                exclude=self.config.exclude,
                max_file_mb=self.config.max_file_mb,
                max_pdf_mb=self.config.max_pdf_mb,
                follow_links_outside=self.config.follow_links_outside,
            )
            documents = loaded.documents
            skipped, warnings = loaded.skipped, loaded.warnings
            corpus = str(root)
            if progress is not None:
                progress("load", len(documents), len(documents))
        else:
            documents = list(source)
            corpus = "<documents>"
        cache = (
            EmbeddingCache(self.settings.home / "cache" / "embeddings.sqlite")
            if self.config.embedding_cache
            else None
        )
        job = IngestJob(
            index=self.name,
            corpus=corpus,
            directory=self.directory,
            store=self.store,
            embedder=self.embedder.for_ingest(),  # the local MiniLM ingests at int8, under its own name
            make_chunker=self._chunker,
            chunk_tokens=self.config.chunk_tokens,
            chunk_overlap=self.config.chunk_overlap,
            cache=cache,
        )
        with self._lock:
            self._release()  # a version is copied from disk: nothing of ours holds it open meanwhile
            try:
                return run_ingest(
                    job, documents, skipped=skipped, warnings=warnings, rebuild=rebuild, progress=progress
                )
            finally:
                if cache is not None:
                    cache.close()
                self._release()

    def _resolve_corpus(self, source: str | Path | None) -> Path:
        if source is None:
            path = self.corpus_dir()
        else:
            path = Path(source)
            if not path.is_dir() and isinstance(source, str) and _NAME.fullmatch(source):
                path = self.corpus_dir(source)
        if not path.is_dir():
            raise InputError(f"{path}: corpus folder does not exist")
        return path.resolve()

    def _chunker(self) -> Chunker:
        return Chunker(
            chunk_tokens=self.config.chunk_tokens,
            chunk_overlap=self.config.chunk_overlap,
            tokens=token_counter(self.embedder),
        )

    # -- search -------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        mode: SearchMode = "hybrid",
        filter: FilterSpec | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``, best first.

        Args:
            query: Natural-language query.
            k: How many hits.
            mode: ``hybrid`` (dense + BM25, fused by the engine), ``dense`` or ``sparse`` (BM25).
            filter: Payload conditions, e.g. ``{"tags": "gpu"}``, ``{"source": ["a.md", "b.md"]}``,
                ``{"modified": {"gte": 1.7e9}}``.

        Raises:
            InputError: a bad ``mode``, ``k`` or filter, or an index that was never built.
            ConfigError: the configured embedder differs from the one the index was built with.
        """
        if mode not in SEARCH_MODES:
            raise InputError(f"unknown search mode {mode!r} (use {', '.join(SEARCH_MODES)})")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if self.tracer is None:
            return self._search(query, k, mode, filter)
        with self.tracer.span("retrieval", f"search {self.name}", input=query) as span:
            hits = self._search(query, k, mode, filter)
            span.model = self._manifest.embedder if self._manifest else None
            span.attributes = {
                "index": self.name,
                "mode": mode,
                "k": k,
                "filter": dict(filter) if filter else None,
                "corpus_version": hits[0].corpus_version if hits else self.corpus_version,
                "hits": len(hits),
                "results": [
                    {"source": h.source, "chunk_id": h.chunk_id, "score": round(h.score, 6)} for h in hits
                ],
            }
            span.output = "\n".join(f"{h.score:.4f} {h.chunk_id}" for h in hits)
            return hits

    def _search(self, query: str, k: int, mode: SearchMode, filter: FilterSpec | None) -> list[Hit]:
        with self._lock:
            shard, manifest = self._current_shard()
            dense = self.embedder.embed([query], kind="query")[0].tolist() if mode != "sparse" else None
            sparse = self._sparse_encoder(manifest).embed_query(query) if mode != "dense" else None
            fusion = Fusion(self.config.fusion, self.config.rrf_k, self.config.candidates)
            found = shard.search(dense=dense, sparse=sparse, mode=mode, k=k, fusion=fusion, filter=filter)
        return [_hit(h, manifest.version) for h in found]

    def _current_shard(self) -> tuple[Shard, Manifest]:
        """The published version, reopened when another ingest has published a newer one."""
        version = self.directory.current_version()
        if version is None:
            raise InputError(f"index {self.name!r} is empty: run `aiapp index {self.name}` first")
        if self._shard is None or version != self._shard_version or self._manifest is None:
            manifest = self.directory.read(version)
            if not self.embedder.searches(manifest.embedder):
                raise ConfigError(
                    f"index {self.name!r} was built with {manifest.embedder}, which the configured embedder "
                    f"{self.embedder.name} cannot search: re-run `aiapp index {self.name}` (or configure "
                    f"retrieval.embedder as it was)",
                    field="retrieval.embedder",
                )
            self._release()
            self._shard = self.store.open(version)
            self._shard_version = version
            self._manifest = manifest
            self._sparse = None
        return self._shard, self._manifest

    def _sparse_encoder(self, manifest: Manifest) -> Any:
        if self._sparse is None:
            self._sparse = build_sparse_encoder(float(manifest.sparse.get("avg_len", 256.0)))
        return self._sparse

    # -- lifecycle ----------------------------------------------------------------------------

    def count(self) -> int:
        """Chunks in the published version (as the store counts them)."""
        with self._lock:
            shard, _ = self._current_shard()
            return shard.count()

    def _release(self) -> None:
        if self._shard is not None:
            self._shard.close()
        self._shard = None
        self._shard_version = None
        self._manifest = None

    def close(self) -> None:
        """Release the store (the index stays on disk)."""
        with self._lock:
            self._release()
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Index {self.name} version={self.corpus_version}>"


def _hit(found: StoreHit, version: str) -> Hit:
    payload = found.payload
    metadata: dict[str, Any] = {k: v for k, v in payload.items() if k not in _HIT_FIELDS}
    metadata.update(payload.get("metadata") or {})
    return Hit(
        text=str(payload.get("text", "")),
        score=found.score,
        source=str(payload.get("source", "")),
        chunk_id=str(payload.get("chunk_id", found.id)),
        doc_id=str(payload.get("doc_id", payload.get("source", ""))),
        corpus_version=version,
        title=payload.get("title"),
        metadata=metadata,
    )
