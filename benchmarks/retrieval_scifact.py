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
   Also dense nDCG@10 by exact search (numpy over every stored vector, ``ndcg10_dense_exact``):
   HNSW's approximate graph differs between ingests, and exact search compares the embedders alone.

Steps 1, 2, 4 and 5 run twice in the same process, once per runtime of the local MiniLM:
``torch`` (sentence-transformers, the reference) and ``onnx`` (ONNX Runtime, the default), each
with its own ``AIAPP_HOME`` (so its own embedding cache). The ONNX runtime ingests with its int8
graph (``local/all-MiniLM-L6-v2+int8``, recorded in the manifest: ``ingest_embedder``) and embeds
queries at float32, so its nDCG@10 is that of int8 documents searched by float32 queries. Step 3
times, on the same texts with the same batch size and alternating block by block, the torch
``encode``, the ONNX float32 embedder, the ONNX ingest (int8) embedder and a cold ingest:
``ingest_embed_vs_torch`` (goal >= 2) is the ingest embedder's throughput over torch's. The
summary line carries both rows and their differences.

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
from aiapp.config import Settings, load_settings
from aiapp.gateway.embedders import build_embedder
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


def exact_dense_ndcg(
    shard: Any, embedder: Any, queries: dict[str, str], qrels: dict[str, set[str]], *, k: int = 50
) -> float:
    """nDCG@10 of dense search done exactly (every stored chunk vector scored with numpy).

    The engine's dense leg is HNSW, an approximate search whose graph differs from one ingest to
    the next: on SciFact the same torch embedder's nDCG@10 moved by 0.003 between two runs. Exact
    search takes that noise out, so the runtimes' difference is the embedders' own.
    """
    import numpy as np
    import qdrant_edge as qe

    from aiapp.retrieval.stores._base import DENSE

    vectors, doc_ids = [], []
    offset: Any = None
    while True:
        records, offset = shard._shard.scroll(
            qe.ScrollRequest(offset=offset, limit=1024, with_payload=True, with_vector=True)
        )
        for record in records:
            vectors.append(record.vector[DENSE])
            doc_ids.append(str(record.payload.get("doc_id", record.payload.get("source", ""))))
        if offset is None or not records:
            break
    matrix = np.asarray(vectors, dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    texts = list(queries.values())
    scores = embedder.embed(texts, kind="query") @ matrix.T
    total = 0.0
    for row, qid in zip(scores, queries, strict=True):
        ranked: dict[str, None] = {}
        for i in np.argsort(-row)[:k]:
            ranked.setdefault(doc_ids[i], None)
        total += ndcg_at(list(ranked), qrels[qid])
    return total / len(queries)


def run_runtime(
    runtime: str,
    settings: Settings,
    docs: list[Document],
    test: tuple[dict[str, str], dict[str, set[str]]],
    train: tuple[dict[str, str], dict[str, set[str]]],
    args: argparse.Namespace,
    torch_model: Any,
) -> dict[str, Any]:
    """Ingest, choose the fusion on train claims, and score the test claims with one runtime."""
    test_queries, test_qrels = test
    train_queries, train_qrels = train
    cfg = settings.retrieval
    embedder = build_embedder(cfg.embedder, runtime=runtime)  # type: ignore[arg-type]
    _ = embedder.embed(["warm up"])  # load the runtime and the model outside every timed region
    _ = embedder.for_ingest().embed(["warm up"])  # and the ingest graph (int8 on ONNX: built once)
    index = Index.open("scifact", settings, embedder=embedder)
    start = time.perf_counter()
    report = index.ingest(docs)
    cold_s = time.perf_counter() - start
    cache_used = report.embeddings_cached > 0
    ingest_embedder = index.manifest.embedder if index.manifest is not None else None
    emit({"step": "ingest_cold", "runtime": runtime, "seconds": round(cold_s, 2), "chunks": report.chunks_total,
          "embedded": report.chunks_embedded, "from_cache": report.embeddings_cached,
          "ingest_embedder": ingest_embedder, "corpus_version": report.corpus_version})  # fmt: skip

    start = time.perf_counter()
    again = index.ingest(docs)
    unchanged_s = time.perf_counter() - start
    assert again.unchanged == len(docs) and not (again.added or again.changed or again.removed)
    emit({"step": "ingest_unchanged", "runtime": runtime, "seconds": round(unchanged_s, 4)})

    train_scores: dict[str, float] = {}
    for fusion in ("dbsf", "rrf"):
        index.config = cfg.model_copy(update={"fusion": fusion})
        train_scores[fusion], _ = evaluate(index, train_queries, train_qrels, "hybrid")
    chosen = max(train_scores, key=lambda f: train_scores[f])
    index.config = cfg.model_copy(update={"fusion": chosen})
    emit({"step": "fusion_on_train", "runtime": runtime, "ndcg10_train": {f: round(v, 4) for f, v in train_scores.items()},
          "chosen": chosen, "rrf_k": cfg.rrf_k, "candidates": cfg.candidates})  # fmt: skip

    results: dict[str, float] = {}
    latencies: list[float] = []
    for mode in ("sparse", "dense", "hybrid"):
        results[mode], lat = evaluate(index, test_queries, test_qrels, mode)
        if mode == "hybrid":
            latencies = lat
        emit({"step": f"test_{mode}", "runtime": runtime, "ndcg10": round(results[mode], 4),
              "p50_ms": round(percentile(lat, 50), 2)})  # fmt: skip
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
    recalls = [
        recall_at(doc_ranking(index, text, k=300, mode="hybrid"), test_qrels[q])
        for q, text in test_queries.items()
    ]
    dense_exact = exact_dense_ndcg(shard, embedder, test_queries, test_qrels)
    emit({"step": "test_dense_exact", "runtime": runtime, "ndcg10": round(dense_exact, 4)})
    index.close()
    return {
        "runtime": runtime,
        "ingest_embedder": ingest_embedder,
        "ndcg10_sparse": round(results["sparse"], 4),
        "ndcg10_dense": round(results["dense"], 4),
        "ndcg10_dense_exact": round(dense_exact, 4),
        "ndcg10_hybrid": round(results["hybrid"], 4),
        "recall100_hybrid": round(sum(recalls) / len(recalls), 4),
        "fusion": chosen,
        "ingest_cold_s": round(cold_s, 2),
        "full_corpus_ingest_docs_per_s": round(len(docs) / cold_s, 2),
        "reingest_unchanged_s": round(unchanged_s, 4),
        "embedding_cache_used": cache_used,
        "query_p50_ms": round(percentile(latencies, 50), 2),
        "query_embed_p50_ms": round(percentile(embed_ms, 50), 2),
        "engine_hybrid_p50_ms": round(percentile(engine_ms, 50), 3),
        "chunks": report.chunks_total,
    }


def throughput(
    settings: Settings, docs: list[Document], args: argparse.Namespace, onnx: Any, torch_model: Any
) -> dict[str, Any]:
    """The same texts embedded by sentence-transformers' ``encode``, by the ONNX embedder (float32),
    by the ONNX ingest embedder (int8) and by a cold ingest (ONNX, no cache), batch size 64, in
    blocks run back to back in alternating order."""
    cfg = settings.retrieval
    subset = docs[:: max(1, round(1 / max(min(args.paired_fraction, 1.0), 0.01)))]
    chunker = Chunker(
        chunk_tokens=cfg.chunk_tokens, chunk_overlap=cfg.chunk_overlap, tokens=token_counter(onnx)
    )
    cold_settings = settings.model_copy(
        update={"retrieval": cfg.model_copy(update={"embedding_cache": False})}
    )
    cold_settings.home = settings.home
    blocks = max(1, min(args.blocks, len(subset)))
    times: dict[str, list[float]] = {"torch": [], "onnx": [], "onnx_ingest": [], "ingest": []}
    n_texts = 0
    onnx.batch_size = 64
    ingest_embedder = onnx.for_ingest()
    ingest_embedder.batch_size = 64
    ingest_embedder.embed(["warm up"])  # build or load the int8 graph outside the timed blocks
    for b in range(blocks):
        block = subset[b::blocks]
        texts = [c.embed_text for d in block for c in chunker.chunk(d)]
        n_texts += len(texts)
        order = ("torch", "onnx", "onnx_ingest", "ingest")
        order = order if b % 2 == 0 else order[::-1]
        for which in order:
            if which == "torch":
                start = time.perf_counter()
                torch_model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=False)  # fmt: skip
                times["torch"].append(time.perf_counter() - start)
            elif which in ("onnx", "onnx_ingest"):
                model = onnx if which == "onnx" else ingest_embedder
                start = time.perf_counter()
                model.embed(texts)
                times[which].append(time.perf_counter() - start)
            else:
                name = f"scifact-paired-{b}"
                with Index.open(name, cold_settings, embedder=onnx) as paired:
                    start = time.perf_counter()
                    paired_report = paired.ingest(block)
                    times["ingest"].append(time.perf_counter() - start)
                assert paired_report.embeddings_cached == 0 and paired_report.chunks_embedded == len(texts)
                shutil.rmtree(settings.home / "indexes" / name, ignore_errors=True)
    rates = {k: n_texts / sum(v) for k, v in times.items()}
    row = {"step": "onnx_vs_torch_embed", "docs": len(subset), "texts": n_texts, "blocks": blocks, "batch_size": 64,
           "threads": onnx.threads, "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
           "ingest_embedder": ingest_embedder.name,
           "torch_texts_per_s": round(rates["torch"], 2), "onnx_fp32_texts_per_s": round(rates["onnx"], 2),
           "onnx_ingest_embed_texts_per_s": round(rates["onnx_ingest"], 2),
           "onnx_cold_ingest_texts_per_s": round(rates["ingest"], 2),
           "onnx_vs_torch": round(rates["onnx"] / rates["torch"], 3),
           "ingest_embed_vs_torch": round(rates["onnx_ingest"] / rates["torch"], 3),
           "onnx_ingest_vs_torch_encode": round(rates["ingest"] / rates["torch"], 3),
           "load_average_1m": round(os.getloadavg()[0], 2)}  # fmt: skip
    emit(row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--home", type=Path, default=REPO / ".aiapp" / "bench-scifact", help="AIAPP_HOME for the run"
    )
    parser.add_argument("--fresh-cache", action="store_true", help="clear the embedding caches first")
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
        help="fraction of the documents (every n-th) for the throughput comparison; 1 = all",
    )
    parser.add_argument(
        "--runtimes", default="torch,onnx", help="local MiniLM runtimes to score (torch is the reference)"
    )
    args = parser.parse_args()

    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    docs = load_corpus(args.data)
    if args.limit_docs:
        docs = docs[: args.limit_docs]
    test = load_test(args.data)
    train = load_train(args.data, set(test[0].values()))
    if args.limit_queries:
        test = (dict(list(test[0].items())[: args.limit_queries]), test[1])
        train = (dict(list(train[0].items())[: args.limit_queries]), train[1])

    def settings_for(runtime: str) -> Settings:
        home = args.home / runtime
        if args.fresh_cache:
            shutil.rmtree(home / "cache", ignore_errors=True)
        shutil.rmtree(home / "indexes", ignore_errors=True)
        os.environ["AIAPP_HOME"] = str(home)
        settings = load_settings(REPO / "configs" / "aiapp.yaml")
        settings.home = home
        return settings

    cfg = settings_for(runtimes[0]).retrieval
    emit({"step": "data", "docs": len(docs), "test_queries": len(test[0]), "train_queries": len(train[0]),
          "embedder": cfg.embedder, "runtimes": runtimes, "chunk_tokens": cfg.chunk_tokens,
          "chunk_overlap": cfg.chunk_overlap, "store": cfg.backend})  # fmt: skip

    from aiapp.gateway.embedders.local import LocalEmbedder

    torch_model = LocalEmbedder().model if "torch" in runtimes else None
    rows = {r: run_runtime(r, settings_for(r), docs, test, train, args, torch_model) for r in runtimes}
    speed: dict[str, Any] = {}
    if {"torch", "onnx"} <= set(rows):
        onnx = build_embedder(cfg.embedder, runtime="onnx")
        speed = throughput(settings_for("onnx"), docs, args, onnx, torch_model)

    summary: dict[str, Any] = {
        "benchmark": "retrieval_scifact",
        "docs": len(docs),
        "rows": list(rows.values()),
    }
    if {"torch", "onnx"} <= set(rows):
        t, o = rows["torch"], rows["onnx"]
        summary["onnx_minus_torch"] = {
            k: round(o[k] - t[k], 4)
            for k in (
                "ndcg10_sparse",
                "ndcg10_dense",
                "ndcg10_dense_exact",
                "ndcg10_hybrid",
                "recall100_hybrid",
            )
        }
        summary["within_0.005"] = all(abs(o[k] - t[k]) <= 0.005 for k in ("ndcg10_dense", "ndcg10_hybrid"))
        summary["within_0.005_exact_dense"] = abs(o["ndcg10_dense_exact"] - t["ndcg10_dense_exact"]) <= 0.005
        summary["onnx_vs_torch_embed"] = speed.get("onnx_vs_torch")
        summary["ingest_embed_vs_torch"] = speed.get("ingest_embed_vs_torch")
        summary["goal_ingest_embed_ge_2x"] = (speed.get("ingest_embed_vs_torch") or 0) >= 2.0
        summary["onnx_ingest_vs_torch_encode"] = speed.get("onnx_ingest_vs_torch_encode")
        summary["query_embed_p50_ms"] = {r: rows[r]["query_embed_p50_ms"] for r in rows}
    summary["anchors"] = {"bm25_anserini": 0.679, "bm25s": 0.687, "minilm_mteb": 0.645}
    emit(summary)


if __name__ == "__main__":
    main()
