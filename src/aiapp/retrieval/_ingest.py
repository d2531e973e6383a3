"""The ingest pipeline: diff against the published manifest, chunk, embed, write a new version, publish.

Only added and changed documents are chunked and embedded (and the embedding cache spares even
those chunks whose text was seen before). The new version is a copy of the published one with the
stale chunks deleted and the new ones upserted; it becomes visible only when its manifest is
published (see :mod:`aiapp.retrieval._manifest`). A crash at any point before that leaves the
published version untouched; the next ingest clears the leftovers and starts again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiapp.errors import ConfigError, InputError
from aiapp.gateway.embedders import Embedder
from aiapp.retrieval._chunking import CHUNKER_VERSION, Chunk, Chunker, point_id_for
from aiapp.retrieval._embedding import EmbeddingCache, embed_texts
from aiapp.retrieval._manifest import DocEntry, IndexDir, Manifest, build_config, corpus_version
from aiapp.retrieval._types import Document, IngestReport, Progress, SkippedFile
from aiapp.retrieval.stores import Store, StorePoint, build_sparse_encoder

log = logging.getLogger("aiapp.retrieval")

BM25_K = 1.2
BM25_B = 0.75
DEFAULT_AVG_LEN = 256.0
_RESERVED = {"headings", "tags"}


@dataclass
class IngestJob:
    """Everything one ingest needs (built by :class:`aiapp.retrieval.Index`)."""

    index: str
    corpus: str
    directory: IndexDir
    store: Store
    embedder: Embedder
    make_chunker: Callable[[], Chunker]
    chunk_tokens: int
    chunk_overlap: int
    cache: EmbeddingCache | None = None
    embed_batch: int = 256


def run_ingest(
    job: IngestJob,
    documents: Sequence[Document],
    *,
    skipped: Sequence[SkippedFile] = (),
    warnings: Sequence[str] = (),
    rebuild: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring the index up to date with ``documents`` (the whole corpus: absent documents are removed)."""
    started = time.perf_counter()
    docs = _unique(documents)
    with job.directory.lock():
        current = job.directory.current()
        _clear_leftovers(job, current)
        chunking = {
            "chunk_tokens": job.chunk_tokens,
            "chunk_overlap": job.chunk_overlap,
            "chunker": CHUNKER_VERSION,
        }
        sparse_base = {"model": "qdrant-bm25", "k": BM25_K, "b": BM25_B}
        config = build_config(job.embedder.name, chunking, sparse_base, job.store.kind)
        reason = _rebuild_reason(current, config, rebuild)
        if reason is None and current is not None and current.store_version not in job.store.versions():
            reason = f"the store no longer holds version {current.store_version}"
        base = None if reason else current
        hashes = {d.source: d.content_hash() for d in docs}
        old = base.documents if base is not None else {}
        before = current.documents if current is not None else {}  # what the report compares with
        added = [s for s in hashes if s not in before]
        changed = [s for s in hashes if s in before and before[s].hash != hashes[s]]
        removed = [s for s in before if s not in hashes]
        report = IngestReport(
            index=job.index,
            corpus=job.corpus,
            added=len(added),
            changed=len(changed),
            removed=len(removed),
            unchanged=len(hashes) - len(added) - len(changed),
            previous_version=current.version if current else None,
            rebuilt=reason is not None,
            reason=reason,
            skipped=list(skipped),
            warnings=list(warnings),
        )
        if base is not None and not (added or changed or removed):
            report.corpus_version = base.version
            report.chunks_total = base.chunk_count
            report.duration_s = time.perf_counter() - started
            return report

        fresh = (set(added) | set(changed)) if base is not None else set(hashes)  # a rebuild redoes all
        todo = [d for d in docs if d.source in fresh]
        chunks_by_doc, failed = _chunk_all(job, todo, progress)
        if failed:  # a document that cannot be chunked is skipped, like a file that cannot be read
            report.skipped.extend(failed)
            gone = {f.path for f in failed}
            todo = [d for d in todo if d.source not in gone]
            for source in gone:
                hashes.pop(source)
            added = [s for s in added if s not in gone]
            changed = [s for s in changed if s not in gone]
            removed += [s for s in gone if s in before]
            report.added, report.changed, report.removed = len(added), len(changed), len(removed)
            report.unchanged = len(hashes) - len(added) - len(changed)
        chunks = [c for d in todo for c in chunks_by_doc[d.source]]
        texts = [c.embed_text for c in chunks]

        if base is not None:
            avg_len = float(base.sparse.get("avg_len", DEFAULT_AVG_LEN))
        else:
            lengths = build_sparse_encoder(DEFAULT_AVG_LEN).lengths(texts)
            avg_len = sum(lengths) / len(lengths) if lengths else DEFAULT_AVG_LEN
        encoder = build_sparse_encoder(avg_len)

        def on_embed(done: int, total: int) -> None:
            if progress is not None:
                progress("embed", done, total)

        vectors, hits = embed_texts(
            job.embedder, texts, cache=job.cache, batch_size=job.embed_batch, progress=on_embed
        )
        dim = (
            int(vectors.shape[1])
            if len(texts)
            else (base.dim if base is not None else _probe_dim(job.embedder))
        )
        if base is not None and dim != base.dim:
            raise ConfigError(
                f"{job.embedder.name} returned {dim}-dimensional vectors; the index holds {base.dim}"
            )
        sparse = encoder.embed_documents(texts)
        by_source = {d.source: d for d in todo}
        points = [
            StorePoint(
                id=c.point_id,
                dense=vectors[i].tolist(),
                sparse=sparse[i],
                payload=_payload(c, by_source[c.source]),
            )
            for i, c in enumerate(chunks)
        ]
        stale = [point_id_for(cid) for s in (*changed, *removed) if s in old for cid in old[s].chunks]

        generation = (current.generation + 1) if current is not None else 1
        version = f"g{generation:06d}"
        shard = job.store.create(version, dim=dim, base=base.store_version if base is not None else None)
        try:
            shard.delete(stale)
            total = len(points)
            step = 2048
            for start in range(0, total, step):
                shard.upsert(points[start : start + step])
                if progress is not None:
                    progress("write", min(start + step, total), total)
            shard.commit()
        finally:
            shard.close()

        entries = {s: e for s, e in old.items() if s in hashes and s not in fresh}
        for d in todo:
            entries[d.source] = DocEntry(
                hash=hashes[d.source],
                chunks=[c.chunk_id for c in chunks_by_doc[d.source]],
                title=d.title,
                modified=d.modified,
            )
        sparse_config = encoder.fingerprint()
        manifest = Manifest(
            index=job.index,
            corpus=job.corpus,
            version=corpus_version(config, entries, {"avg_len": sparse_config["avg_len"]}),
            generation=generation,
            store=job.store.kind,
            store_version=version,
            parent=current.store_version if current is not None else None,
            embedder=job.embedder.name,
            embedder_runtime=getattr(job.embedder, "runtime", None),
            dim=dim,
            chunking=chunking,
            sparse=sparse_config,
            documents=dict(sorted(entries.items())),
            chunk_count=sum(len(e.chunks) for e in entries.values()),
        )
        job.directory.publish(manifest)
        _clear_leftovers(job, manifest)
        report.corpus_version = manifest.version
        report.chunks_total = manifest.chunk_count
        report.chunks_embedded = len(texts)
        report.embeddings_cached = hits
        report.duration_s = time.perf_counter() - started
        return report


def _unique(documents: Sequence[Document]) -> list[Document]:
    seen: set[str] = set()
    for doc in documents:
        if doc.source in seen:
            raise InputError(f"two documents have the same source {doc.source!r}")
        seen.add(doc.source)
    return list(documents)


def _rebuild_reason(current: Manifest | None, config: dict[str, Any], rebuild: bool) -> str | None:
    if current is None:
        return "new index"
    if rebuild:
        return "rebuild requested"
    old = current.build_config()
    if old == config:
        return None
    if old["embedder"] != config["embedder"]:
        return f"embedding model changed from {old['embedder']} to {config['embedder']}"
    if old["chunking"] != config["chunking"]:
        before = ", ".join(f"{k}={v}" for k, v in old["chunking"].items())
        after = ", ".join(f"{k}={v}" for k, v in config["chunking"].items())
        return f"chunking changed from {before} to {after}"
    if old["store"] != config["store"]:
        return f"store changed from {old['store']} to {config['store']}"
    return "sparse model changed"


def _clear_leftovers(job: IngestJob, keep_from: Manifest | None) -> None:
    """Drop versions that are neither published nor the published version's parent (crash leftovers)."""
    keep = {v for v in (keep_from.store_version, keep_from.parent) if v} if keep_from else set()
    for version in job.store.versions():
        if version not in keep:
            log.info("dropping index version %s of %s", version, job.index)
            job.store.drop(version)
    for version in job.directory.manifest_versions():
        if version not in keep:
            job.directory.drop_manifest(version)


def _chunk_all(
    job: IngestJob, docs: Sequence[Document], progress: Progress | None
) -> tuple[dict[str, list[Chunk]], list[SkippedFile]]:
    """Chunks by source, and the documents whose chunking failed (any exception), with the reason."""
    out: dict[str, list[Chunk]] = {}
    failed: list[SkippedFile] = []
    if not docs:
        return out, failed
    chunker = job.make_chunker()
    total = len(docs)
    for i, doc in enumerate(docs, 1):
        try:
            out[doc.source] = chunker.chunk(doc)
        except Exception as exc:  # untrusted input: one document never ends the ingest
            message = " ".join(str(exc).split())[:200]
            reason = f"could not be chunked ({type(exc).__name__}: {message})"
            log.warning("skipped %s: %s", doc.source, reason)
            failed.append(SkippedFile(path=doc.source, reason=reason))
        if progress is not None and (i % 64 == 0 or i == total):
            progress("chunk", i, total)
    return out, failed


def _payload(chunk: Chunk, doc: Document) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "text": chunk.text,
        "source": doc.source,
        "doc_id": doc.source,
        "chunk_id": chunk.chunk_id,
        "title": doc.title,
        "headings": chunk.headings,
        "ordinal": chunk.ordinal,
        "tags": doc.tags,
    }
    if doc.modified is not None:
        payload["modified"] = doc.modified
    extra = {k: v for k, v in doc.metadata.items() if k not in _RESERVED}
    if extra:
        payload["metadata"] = extra
    return payload


def _probe_dim(embedder: Embedder) -> int:
    if embedder.dim:
        return int(embedder.dim)
    return int(embedder.embed(["dimension probe"]).shape[1])
