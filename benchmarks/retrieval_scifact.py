"""Retrieval quality and ingest speed on BEIR SciFact (5,183 abstracts, 300 test claims).

Run: ``.venv/bin/python benchmarks/retrieval_scifact.py [--data ../shared/data/beir_scifact]``

What it does, printing one JSON object per step (the last line is the summary):

1. Ingest of the whole corpus into a fresh index (Qdrant Edge, MiniLM, BM25): ``ingest_cold_s``.
   A repeat run reuses the embedding cache and says so (``embedding_cache_used``); ``--fresh-cache``
   clears it first.
2. An unchanged re-ingest (only hashing and the manifest diff): ``reingest_unchanged_s``.
3. Ingest throughput against the reference, the raw sentence-transformers ``encode`` of exactly the
   texts the ingest embeds, on every 10th document cut into blocks, each block encoded and ingested
   cold (no cache) back to back in alternating order, so a machine whose load swings is fair to both.
4. The fusion method (DBSF vs RRF k=60) is chosen on SciFact's *train* claims (809, from the
   original AllenAI release in ``original/``), before any test query is run.
5. nDCG@10 for BM25, dense and hybrid search on the 300 test claims, recall@100 for hybrid, and
   the p50 latency of a hybrid query. Chunks are ranked, then folded into documents (best chunk).

Published anchors on this test set: BM25 0.679 (Anserini) / 0.687 (bm25s); all-MiniLM-L6-v2 0.645 (MTEB).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _common import emit, percentile
from aiapp.config import load_settings
from aiapp.retrieval import Chunker, Document, Index, token_counter
from aiapp.retrieval.stores import Fusion

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "beir_scifact"


def load_corpus(data: Path) -> list[Document]:
    """SciFact abstracts as documents (source = BEIR doc id)."""
    docs = []
    with open(data / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            docs.append(Document(source=str(row["_id"]), title=row.get("title") or None, text=row["text"]))
    return docs


def load_test(data: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Test queries and qrels (BEIR format)."""
    queries = {}
    with open(data / "queries.test.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    qrels: dict[str, set[str]] = {}
    with open(data / "qrels" / "test.tsv", encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) >= 3 and row[0].isdigit() and int(row[2]) > 0:
                qrels.setdefault(row[0], set()).add(row[1])
    return {q: t for q, t in queries.items() if q in qrels}, qrels


def load_train(data: Path, test_texts: set[str]) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Train claims and their cited documents (BEIR's train split), minus any claim also in test."""
    with zipfile.ZipFile(data / "original" / "scifact_hf_allenai.zip") as archive:
        text = archive.read("claims_train.csv").decode("utf-8")
    queries: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row["claim"] in test_texts:
            continue
        cited = set(re.findall(r"\d+", row["cited_doc_ids"]))
        if cited:
            queries[row["id"]] = row["claim"]
            qrels.setdefault(row["id"], set()).update(cited)
    return queries, qrels


def doc_ranking(index: Index, query: str, *, k: int, mode: str) -> list[str]:
    """Documents ranked by their best chunk."""
    seen: dict[str, None] = {}
    for hit in index.search(query, k=k, mode=mode):  # type: ignore[arg-type]
        seen.setdefault(hit.doc_id, None)
    return list(seen)


def ndcg_at(ranked: list[str], relevant: set[str], n: int = 10) -> float:
    """Binary-relevance nDCG@n."""
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:n]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), n)))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: list[str], relevant: set[str], n: int = 100) -> float:
    """Fraction of relevant documents in the top n."""
    return len(set(ranked[:n]) & relevant) / len(relevant) if relevant else 0.0


def evaluate(
    index: Index, queries: dict[str, str], qrels: dict[str, set[str]], mode: str, *, k: int = 50
) -> tuple[float, list[float]]:
    """Mean nDCG@10 and per-query latencies (ms)."""
    scores, latencies = [], []
    for qid, text in queries.items():
        start = time.perf_counter()
        ranked = doc_ranking(index, text, k=k, mode=mode)
        latencies.append((time.perf_counter() - start) * 1000.0)
        scores.append(ndcg_at(ranked, qrels[qid]))
    return sum(scores) / len(scores), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--home", type=Path, default=REPO / ".aiapp" / "bench-scifact", help="AIAPP_HOME for the run"
    )
    parser.add_argument("--fresh-cache", action="store_true", help="clear the embedding cache first")
    parser.add_argument(
        "--limit-docs", type=int, default=0, help="index only the first N documents (smoke test)"
    )
    parser.add_argument(
        "--limit-queries", type=int, default=0, help="use only the first N queries (smoke test)"
    )
    parser.add_argument("--blocks", type=int, default=8, help="blocks of the throughput comparison")
    parser.add_argument(
        "--paired-fraction",
        type=float,
        default=0.1,
        help="fraction of the documents (every n-th) for the ingest-vs-encoder comparison; 1 = all",
    )
    args = parser.parse_args()

    if args.fresh_cache:
        shutil.rmtree(args.home / "cache", ignore_errors=True)
    shutil.rmtree(args.home / "indexes", ignore_errors=True)
    os.environ["AIAPP_HOME"] = str(args.home)
    settings = load_settings(REPO / "configs" / "aiapp.yaml")
    settings.home = args.home

    docs = load_corpus(args.data)
    if args.limit_docs:
        docs = docs[: args.limit_docs]
    test_queries, test_qrels = load_test(args.data)
    train_queries, train_qrels = load_train(args.data, set(test_queries.values()))
    if args.limit_queries:
        test_queries = dict(list(test_queries.items())[: args.limit_queries])
        train_queries = dict(list(train_queries.items())[: args.limit_queries])
    cfg = settings.retrieval
    emit({"step": "data", "docs": len(docs), "test_queries": len(test_queries), "train_queries": len(train_queries),
          "embedder": cfg.embedder, "chunk_tokens": cfg.chunk_tokens, "chunk_overlap": cfg.chunk_overlap,
          "store": cfg.backend})  # fmt: skip

    index = Index.open("scifact", settings)
    embedder = index.embedder
    _ = embedder.embed(["warm up"])  # load torch and the model outside every timed region

    start = time.perf_counter()
    report = index.ingest(docs)
    cold_s = time.perf_counter() - start
    cache_used = report.embeddings_cached > 0
    emit({"step": "ingest_cold", "seconds": round(cold_s, 2), "chunks": report.chunks_total,
          "embedded": report.chunks_embedded, "from_cache": report.embeddings_cached,
          "corpus_version": report.corpus_version})  # fmt: skip

    start = time.perf_counter()
    again = index.ingest(docs)
    unchanged_s = time.perf_counter() - start
    assert again.unchanged == len(docs) and not (again.added or again.changed or again.removed)
    emit(
        {"step": "ingest_unchanged", "seconds": round(unchanged_s, 4), "corpus_version": again.corpus_version}
    )

    # Throughput against the reference: the model's own encode of exactly the texts the ingest
    # embeds. A subset is cut into blocks; each block is encoded and cold-ingested (fresh index, no
    # cache) back to back, alternating which goes first, so a machine whose load swings during the
    # run (shared CPUs) weighs both sides alike.
    subset = docs[:: max(1, round(1 / max(min(args.paired_fraction, 1.0), 0.01)))]
    chunker = Chunker(
        chunk_tokens=cfg.chunk_tokens, chunk_overlap=cfg.chunk_overlap, tokens=token_counter(embedder)
    )
    model: Any = embedder.model  # type: ignore[attr-defined]
    cold_settings = settings.model_copy(
        update={"retrieval": cfg.model_copy(update={"embedding_cache": False})}
    )
    cold_settings.home = settings.home
    blocks = max(1, min(args.blocks, len(subset)))
    encode_times: list[float] = []
    ingest_times: list[float] = []
    n_texts = 0
    for b in range(blocks):
        block = subset[b::blocks]
        texts = [c.embed_text for d in block for c in chunker.chunk(d)]
        n_texts += len(texts)
        for which in ("encode", "ingest") if b % 2 == 0 else ("ingest", "encode"):
            if which == "encode":
                start = time.perf_counter()
                model.encode(
                    texts,
                    batch_size=64,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                encode_times.append(time.perf_counter() - start)
                continue
            name = f"scifact-paired-{b}"
            with Index.open(name, cold_settings, embedder=embedder) as paired:
                start = time.perf_counter()
                paired_report = paired.ingest(block)
                ingest_times.append(time.perf_counter() - start)
            assert paired_report.embeddings_cached == 0 and paired_report.chunks_embedded == len(texts)
            shutil.rmtree(settings.home / "indexes" / name, ignore_errors=True)
    encoder_docs_per_s = len(subset) / sum(encode_times)
    ingest_docs_per_s = len(subset) / sum(ingest_times)
    emit({"step": "ingest_vs_encoder", "docs": len(subset), "texts": n_texts, "blocks": blocks,
          "encode_s": [round(t, 2) for t in encode_times], "ingest_s": [round(t, 2) for t in ingest_times],
          "encoder_docs_per_s": round(encoder_docs_per_s, 2), "ingest_docs_per_s": round(ingest_docs_per_s, 2),
          "full_corpus_ingest_docs_per_s": round(len(docs) / cold_s, 2)})  # fmt: skip

    # Choose the fusion on train claims only.
    train: dict[str, float] = {}
    for fusion in ("dbsf", "rrf"):
        index.config = cfg.model_copy(update={"fusion": fusion})
        train[fusion], _ = evaluate(index, train_queries, train_qrels, "hybrid")
    chosen = max(train, key=lambda f: train[f])
    index.config = cfg.model_copy(update={"fusion": chosen})
    emit({"step": "fusion_on_train", "ndcg10_train": {f: round(v, 4) for f, v in train.items()}, "chosen": chosen,
          "rrf_k": cfg.rrf_k, "candidates": cfg.candidates})  # fmt: skip

    results: dict[str, float] = {}
    latencies: list[float] = []
    for mode in ("sparse", "dense", "hybrid"):
        results[mode], lat = evaluate(index, test_queries, test_qrels, mode)
        if mode == "hybrid":
            latencies = lat
        emit(
            {
                "step": f"test_{mode}",
                "ndcg10": round(results[mode], 4),
                "p50_ms": round(percentile(lat, 50), 2),
            }
        )
    # Where a hybrid query's time goes: the model encoding the query, and the engine's fused search.
    shard, manifest = index._current_shard()
    sparse_encoder = index._sparse_encoder(manifest)
    fusion = Fusion(chosen, cfg.rrf_k, cfg.candidates)
    embed_ms, engine_ms = [], []
    for text in test_queries.values():
        start = time.perf_counter()
        vector = embedder.embed([text], kind="query")[0].tolist()
        embed_ms.append((time.perf_counter() - start) * 1000.0)
        sparse = sparse_encoder.embed_query(text)
        start = time.perf_counter()
        shard.search(dense=vector, sparse=sparse, mode="hybrid", k=50, fusion=fusion)
        engine_ms.append((time.perf_counter() - start) * 1000.0)
    emit({"step": "query_breakdown", "query_embed_p50_ms": round(percentile(embed_ms, 50), 2),
          "engine_hybrid_p50_ms": round(percentile(engine_ms, 50), 3)})  # fmt: skip
    recalls = [
        recall_at(doc_ranking(index, text, k=300, mode="hybrid"), test_qrels[q])
        for q, text in test_queries.items()
    ]
    recall100 = sum(recalls) / len(recalls)
    index.close()

    emit({
        "benchmark": "retrieval_scifact",
        "ndcg10_sparse": round(results["sparse"], 4),
        "ndcg10_dense": round(results["dense"], 4),
        "ndcg10_hybrid": round(results["hybrid"], 4),
        "recall100_hybrid": round(recall100, 4),
        "encoder_docs_per_s": round(encoder_docs_per_s, 2),
        "ingest_docs_per_s": round(ingest_docs_per_s, 2),
        "ingest_vs_encoder": round(ingest_docs_per_s / encoder_docs_per_s, 3),
        "full_corpus_ingest_docs_per_s": round(len(docs) / cold_s, 2),
        "reingest_unchanged_s": round(unchanged_s, 4),
        "ingest_cold_s": round(cold_s, 2),
        "cold_vs_unchanged": round(cold_s / unchanged_s, 1),
        "query_p50_ms": round(percentile(latencies, 50), 2),
        "query_embed_p50_ms": round(percentile(embed_ms, 50), 2),
        "engine_hybrid_p50_ms": round(percentile(engine_ms, 50), 3),
        "fusion": chosen,
        "embedding_cache_used": cache_used,
        "chunks": report.chunks_total,
        "docs": len(docs),
        "anchors": {"bm25_anserini": 0.679, "bm25s": 0.687, "minilm_mteb": 0.645},
    })  # fmt: skip


if __name__ == "__main__":
    main()
