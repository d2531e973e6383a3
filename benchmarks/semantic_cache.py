"""Semantic-cache safety on MRPC: how often does a reworded request reuse a reply, and how often wrongly?

Data: ``../shared/data/mrpc_test/pairs.jsonl`` (MRPC test: 1,725 sentence pairs; 1,147 paraphrases,
578 labelled *not* paraphrases — pairs that share most of their words but say different things).
For each pair, sentence ``a`` is cached as a user request and sentence ``b`` is looked up, through
aiapp's own :class:`SemanticIndex` and scope (numbers in the message are part of the scope, a hit
needs a similar length). A hit across a label-0 pair is a **false hit**; across a label-1 pair a
**true hit**. Embeddings: the shipped all-MiniLM-L6-v2 as the semantic cache runs it (ONNX Runtime
at int8, ``local/all-MiniLM-L6-v2+int8``), one text per call as the cache embeds them (int8
activations are quantized per call, so a batch would give slightly different vectors).

Reference, same run: plain cosine similarity with no scoping or length guard, at each threshold.
Also reported: a 2-fold check (threshold chosen on one half, measured on the other), false hits
against a shared pool of all cached ``a`` sentences, and end-to-end latency through the gateway
(``semantic_hit_p50_ms``, including embedding the request) next to an exact hit.

The same pairs are also embedded at float32 by ONNX Runtime and, with ``--torch-reference`` (on by
default), by sentence-transformers, in the same run: the ``runtimes`` line reports each one's hit
rates at the default threshold and single-query embedding latency.

Every line is JSON; the last is the summary (``threshold``, ``false_hit_rate``, ``true_hit_rate``,
``semantic_hit_p50_ms``; goal: ``false_hit_rate <= 0.01``).

Usage: python benchmarks/semantic_cache.py [--limit N] [--timed 100] [--embeddings FILE.npz]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("AIAPP_HOME", tempfile.mkdtemp(prefix="aiapp-bench-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

from _common import emit, percentile
from aiapp.config import CacheSettings, SemanticCacheSettings, Settings, TracingSettings
from aiapp.gateway import Gateway
from aiapp.gateway.cache import SemanticIndex, semantic_scope
from aiapp.gateway.embedders import build_embedder
from aiapp.testing import FakeModel
from aiapp.types import Message

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mrpc_test" / "pairs.jsonl"
DEFAULTS = SemanticCacheSettings()
SWEEP = [0.85, 0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.965, 0.97, 0.98]


def guarded_hits(
    rows: list[dict], a: np.ndarray, b: np.ndarray, threshold: float, ratio: float, pool: bool = False
) -> np.ndarray:
    """Whether each pair's ``b`` hits its ``a`` through aiapp's index (per-pair scopes, or one pool)."""
    index = SemanticIndex(None, embedder="bench", threshold=threshold, min_length_ratio=ratio)
    scopes_a, scopes_b = [], []
    for i, row in enumerate(rows):
        identity = "pool" if pool else f"pair-{i}"
        scopes_a.append(semantic_scope(identity, [Message.user(row["a"])], None, None))
        scopes_b.append(semantic_scope(identity, [Message.user(row["b"])], None, None))
        index.add(scopes_a[i], row["a"], a[i], key=f"a{i}")  # type: ignore[arg-type]
    out = np.zeros(len(rows), dtype=np.int8)  # 0 miss, 1 hit on its own a, 2 hit on another a
    for i, row in enumerate(rows):
        match = index.lookup(scopes_b[i], row["b"], b[i])  # type: ignore[arg-type]
        if match is not None:
            out[i] = 1 if match.key == f"a{i}" else 2
    return out


def one_by_one(embedder: Any, texts: list[str]) -> np.ndarray:
    """Each text embedded on its own, as the semantic cache does (one request, one embedding)."""
    return np.vstack([embedder.embed([t], kind="query") for t in texts])


def rates(hits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    hit = hits > 0
    return float(hit[labels == 0].mean()), float((hits == 1)[labels == 1].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs (quick runs)")
    parser.add_argument("--timed", type=int, default=100, help="gateway calls timed for the latency lines")
    parser.add_argument("--embeddings", type=Path, help="an .npz file to reuse the pairs' embeddings from")
    parser.add_argument(
        "--torch-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the sentence-transformers runtime (same pairs, same run)",
    )
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    if args.limit:
        rows = rows[: args.limit]
    labels = np.array([int(r["label"]) for r in rows])
    embedder = build_embedder(DEFAULTS.embedder, precision="int8")  # as the cache layer builds it
    runtime = getattr(embedder, "runtime", None)
    t0 = time.perf_counter()
    cache = args.embeddings
    saved = np.load(cache) if cache is not None and cache.is_file() else None
    if saved is not None and saved["a"].shape[0] == len(rows):
        a, b = saved["a"], saved["b"]
    else:
        a = one_by_one(embedder, [r["a"] for r in rows])
        b = one_by_one(embedder, [r["b"] for r in rows])
        if cache is not None:
            np.savez(cache, a=a, b=b)
    emit(
        {
            "step": "embed",
            "runtime": runtime,
            "embedder": embedder.name,
            "texts": 2 * len(rows),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    )
    cosine = (a * b).sum(axis=1)
    runtimes = compare_runtimes(rows, labels, a, b, embedder, torch=args.torch_reference)

    for threshold in SWEEP:
        plain = cosine >= threshold
        guarded = guarded_hits(rows, a, b, threshold, DEFAULTS.min_length_ratio)
        fh, th = rates(guarded, labels)
        emit(
            {
                "threshold": threshold,
                "false_hit_rate": round(fh, 4),
                "true_hit_rate": round(th, 4),
                "plain_cosine_false_hit_rate": round(float(plain[labels == 0].mean()), 4),
                "plain_cosine_true_hit_rate": round(float(plain[labels == 1].mean()), 4),
            }
        )

    # 2-fold check: pick the lowest threshold with false hits <= 1% on one half, measure the other.
    rng = random.Random(0)
    order = list(range(len(rows)))
    rng.shuffle(order)
    halves = [np.array(order[: len(order) // 2]), np.array(order[len(order) // 2 :])]
    grid = [round(x, 3) for x in np.arange(0.85, 0.99, 0.005)]
    by_threshold = {t: guarded_hits(rows, a, b, t, DEFAULTS.min_length_ratio) for t in grid}
    folds = []
    for k in (0, 1):
        fit, held = halves[k], halves[1 - k]
        ok = [t for t in grid if rates(by_threshold[t][fit], labels[fit])[0] <= 0.01]
        chosen = min(ok) if ok else max(grid)
        fh, th = rates(by_threshold[chosen][held], labels[held])
        folds.append(
            {
                "chosen": chosen,
                "held_out_false_hit_rate": round(fh, 4),
                "held_out_true_hit_rate": round(th, 4),
            }
        )
    emit({"check": "2-fold", "folds": folds})

    # All 1,725 a sentences in one scope: b may now hit another pair's a. MRPC repeats sentences
    # across pairs, so such hits carry no label; count them and how many are the very same text.
    pool = guarded_hits(rows, a, b, DEFAULTS.threshold, DEFAULTS.min_length_ratio, pool=True)
    emit(
        {
            "check": "shared pool (every a cached in one scope)",
            "threshold": DEFAULTS.threshold,
            "false_hit_rate_on_own_pair": round(
                float(((pool == 1) & (labels == 0)).sum() / (labels == 0).sum()), 4
            ),
            "true_hit_rate": round(float((pool == 1)[labels == 1].mean()), 4),
            "hits_on_another_pair_unlabelled": int((pool == 2).sum()),
            "lookups": len(rows),
        }
    )

    # End to end through the gateway: semantic hits (embedding included) vs exact hits vs misses.
    default = guarded_hits(rows, a, b, DEFAULTS.threshold, DEFAULTS.min_length_ratio)
    fh, th = rates(default, labels)
    hitting = [i for i in range(len(rows)) if default[i] == 1][: args.timed]
    settings = Settings(
        cache=CacheSettings(semantic=SemanticCacheSettings(enabled=True)),
        tracing=TracingSettings(enabled=True),
    )
    gw = Gateway(settings, models={"r": FakeModel(default="cached reply")})
    gw.complete("warm up the embedder", model="r")
    miss_ms, semantic_ms, exact_ms, embed_ms = [], [], [], []
    for i in hitting:
        t = time.perf_counter()
        embedder.embed([rows[i]["b"]], kind="query")  # reference: the embedding alone
        embed_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        gw.complete(rows[i]["a"], model="r")
        miss_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        reply = gw.complete(rows[i]["b"], model="r")
        semantic_ms.append((time.perf_counter() - t) * 1000)
        assert reply.cache_hit
        t = time.perf_counter()
        gw.complete(rows[i]["a"], model="r")
        exact_ms.append((time.perf_counter() - t) * 1000)
    emit(
        {
            "check": "gateway latency",
            "calls": len(hitting),
            "semantic_hit_p50_ms": round(percentile(semantic_ms, 50), 3),
            "exact_hit_p50_ms": round(percentile(exact_ms, 50), 3),
            "miss_p50_ms": round(percentile(miss_ms, 50), 3),
            "embedding_alone_p50_ms": round(percentile(embed_ms, 50), 3),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    )
    emit(
        {
            "benchmark": "semantic_cache",
            "pairs": len(rows),
            "not_paraphrase_pairs": int((labels == 0).sum()),
            "threshold": DEFAULTS.threshold,
            "min_length_ratio": DEFAULTS.min_length_ratio,
            "scope": "route + prompt@version + history + params + numbers in the message",
            "false_hit_rate": round(fh, 4),
            "true_hit_rate": round(th, 4),
            "semantic_hit_p50_ms": round(percentile(semantic_ms, 50), 3),
            "exact_hit_p50_ms": round(percentile(exact_ms, 50), 3),
            "embedding_alone_p50_ms": round(percentile(embed_ms, 50), 3),
            "goal_false_hit_rate_le_0_01": fh <= 0.01,
            "goal_semantic_hit_p50_le_5_ms": percentile(semantic_ms, 50) <= 5.0,
            "runtime": runtime,
            "embedder": embedder.name,
            "runtimes": runtimes,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
    )


def compare_runtimes(
    rows: list[dict], labels: np.ndarray, a: np.ndarray, b: np.ndarray, cached: object, *, torch: bool
) -> dict[str, dict[str, float]]:
    """The same pairs embedded at float32 (ONNX Runtime, and sentence-transformers when ``torch``):
    hit rates at the default threshold, single-query latency, and how far apart the vectors are."""
    models: dict[str, object] = {"onnx_fp32": build_embedder(DEFAULTS.embedder, runtime="onnx")}
    if torch:
        models["torch"] = build_embedder(DEFAULTS.embedder, runtime="torch")
    vectors: dict[str, tuple[np.ndarray, np.ndarray, object]] = {"cache_int8": (a, b, cached)}
    seconds: dict[str, float] = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        va = model.embed([r["a"] for r in rows])  # type: ignore[attr-defined]
        vb = model.embed([r["b"] for r in rows])  # type: ignore[attr-defined]
        seconds[name] = round(time.perf_counter() - t0, 1)
        vectors[name] = (va, vb, model)
    out: dict[str, dict[str, float]] = {}
    for name, (va, vb, model) in vectors.items():
        fh, th = rates(guarded_hits(rows, va, vb, DEFAULTS.threshold, DEFAULTS.min_length_ratio), labels)
        single = []
        for row in rows[:200]:
            t = time.perf_counter()
            model.embed([row["b"]], kind="query")  # type: ignore[attr-defined]
            single.append((time.perf_counter() - t) * 1000)
        out[name] = {
            "false_hit_rate": round(fh, 4),
            "true_hit_rate": round(th, 4),
            "query_embed_p50_ms": round(percentile(single, 50), 3),
        }
    fa, fb, _ = vectors["onnx_fp32"]
    agreement = np.concatenate([(a * fa).sum(axis=1), (b * fb).sum(axis=1)])
    out["vectors"] = {
        "min_cosine_int8_vs_fp32": round(float(agreement.min()), 6),
        "mean_cosine_int8_vs_fp32": round(float(agreement.mean()), 6),
        **{f"{name}_embed_s": value for name, value in seconds.items()},
    }
    if torch:
        ta, tb, _ = vectors["torch"]
        same = np.concatenate([(fa * ta).sum(axis=1), (fb * tb).sum(axis=1)])
        out["vectors"]["min_cosine_onnx_fp32_vs_torch"] = round(float(same.min()), 6)
    emit({"check": "runtimes", "threshold": DEFAULTS.threshold, **out})
    return out


if __name__ == "__main__":
    main()
