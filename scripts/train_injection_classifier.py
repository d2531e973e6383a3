"""Train the prompt-injection classifier that ships in ``aiapp/guardrails/data/injection_lr.npz``.

Reproducible: fixed seed, deterministic full-batch training, only the deepset **train** split.
No test data is read here — neither for training nor for choosing hyperparameters or thresholds.

How:
1. Featurize each training text as aiapp does at run time (:mod:`aiapp.guardrails._classifier`):
   hashed n-grams (``lite``), and MiniLM embeddings of the text and of its sentences plus the
   n-grams (``full``).
2. 5-fold stratified cross-validation on train.jsonl (seed 0) picks each model's L2 strength, and
   the out-of-fold probabilities pick its decision threshold: the one maximizing the model's own
   F1. Each training text is thus scored once by a model that never saw it: a validation split of
   train, used five times. The signature rules are left out of this choice on purpose: they were
   written while reading train.jsonl, so counting their hits there would be in-sample and would
   push the threshold up. (The F1 of rules OR classifier is printed too, for information.)
3. The same out-of-fold probabilities pick the cascades' bounds: ``lite`` decides below ``low``
   and above ``high``, ``full`` in between. ``auto``: of the pairs whose cascade F1 is at least
   ``full``'s own cross-validated F1 (no worse than always embedding), the one that sends the
   fewest texts to ``full`` (ties: the better F1); an embedding is ~14 ms here and the n-grams
   well under 1, so every text kept from ``full`` is latency saved. ``accurate``: the pair with
   the best cascade F1 (ties: the fewest sent to ``full``).
4. The final models are fit on all of train.jsonl with the chosen L2 and saved with their
   thresholds and the cascades' bounds.

Usage::

    .venv/bin/python scripts/train_injection_classifier.py                       # writes the shipped file
    .venv/bin/python scripts/train_injection_classifier.py --cache /tmp/emb --out /tmp/w.npz

Prints one JSON line per model and L2, one per cascade, then a summary line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import sparse  # training only (installed with scikit-learn by the retrieval extra)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from aiapp.guardrails._classifier import full_features, lite_features  # noqa: E402
from aiapp.guardrails._injection import match_signature  # noqa: E402

SEED = 0
FOLDS = 5
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "prompt_injection_deepset" / "train.jsonl"
DEFAULT_OUT = ROOT / "src" / "aiapp" / "guardrails" / "data" / "injection_lr.npz"

F64 = npt.NDArray[np.float64]


def fit_logreg(
    x: sparse.csr_matrix, y: F64, *, l2: float, steps: int = 600, lr: float = 1.0
) -> tuple[F64, float]:
    """Class-balanced L2 logistic regression by full-batch Nesterov gradient descent (deterministic)."""
    pos = y.sum()
    weights = np.where(y == 1, (len(y) - pos) / max(pos, 1.0), 1.0)
    weights = weights / weights.mean()
    w = np.zeros(x.shape[1])
    b = 0.0
    vw = np.zeros_like(w)
    vb = 0.0
    momentum = 0.9
    for _ in range(steps):
        lw, lb = w + momentum * vw, b + momentum * vb
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ lw + lb, -40, 40)))
        g = (p - y) * weights
        gw = x.T @ g / len(y) + l2 * lw
        gb = float(g.mean())
        vw = momentum * vw - lr * gw
        vb = momentum * vb - lr * gb
        w, b = w + vw, b + vb
    return w, b


def predict(x: sparse.csr_matrix, w: F64, b: float) -> F64:
    """Probabilities for rows of ``x``."""
    result: F64 = 1.0 / (1.0 + np.exp(-np.clip(x @ w + b, -40, 40)))
    return result


def f1_at(probs: F64, rules: npt.NDArray[np.bool_], y: F64, threshold: float) -> tuple[float, float, float]:
    """Precision, recall and F1 of (rule hit OR prob >= threshold)."""
    pred = rules | (probs >= threshold)
    tp = float((pred & (y == 1)).sum())
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float((y == 1).sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    return precision, recall, f1


def best_threshold(probs: F64, rules: npt.NDArray[np.bool_], y: F64) -> tuple[float, float]:
    """The threshold in [0.2, 0.95] with the best F1 (ties: the highest, i.e. fewer blocks)."""
    best_t, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.20, 0.951, 0.01), 2):
        f1 = f1_at(probs, rules, y, float(t))[2]
        if f1 >= best_f1 - 1e-12:
            best_t, best_f1 = float(t), f1
    return best_t, best_f1


def stratified_folds(y: F64, k: int, seed: int) -> list[npt.NDArray[np.int64]]:
    """``k`` folds with the label balance of ``y``, shuffled with ``seed``."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for label in (0.0, 1.0):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        for i, j in enumerate(idx):
            folds[i % k].append(int(j))
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


class _CachingEmbedder:
    """The local MiniLM, with each batch's vectors cached on disk by the batch's hash."""

    def __init__(self, cache: Path | None) -> None:
        self.cache = cache

    def embed(self, texts: list[str], *, kind: str = "query") -> npt.NDArray[np.float32]:
        key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        path = self.cache / f"minilm-{key}.npy" if self.cache else None
        if path is not None and path.exists():
            return np.load(path)
        from aiapp.gateway.embedders import build_embedder

        vectors = np.asarray(build_embedder().embed(texts, kind=kind), dtype=np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
        return vectors


def cascade_bounds(
    lite: F64, full: F64, full_threshold: float, y: F64, floor: float | None
) -> dict[str, float]:
    """A cascade's bounds from out-of-fold probabilities (see the module docstring).

    With ``floor``: the fewest texts sent to ``full`` among pairs with F1 >= ``floor``.
    Without: the best F1, then the fewest sent to ``full``.
    """
    no_rules = np.zeros(len(y), dtype=bool)
    candidates = []
    for low in np.round(np.arange(0.01, full_threshold, 0.01), 2):
        for high in np.round(np.arange(max(full_threshold, 0.5), 0.996, 0.01), 2):
            unsure = (lite >= low) & (lite <= high)
            mixed = np.where(unsure, full, lite)
            f1 = f1_at(mixed, no_rules, y, full_threshold)[2]
            candidates.append((f1, float(unsure.mean()), float(low), float(high)))
    if floor is None:
        f1, escalated, low, high = min(candidates, key=lambda c: (-c[0], c[1]))
    else:
        good = [c for c in candidates if c[0] >= floor - 1e-12] or [max(candidates)]
        f1, escalated, low, high = min(good, key=lambda c: (c[1], -c[0]))
    p, r, _ = f1_at(np.where((lite >= low) & (lite <= high), full, lite), no_rules, y, full_threshold)
    return {
        "low": low,
        "high": high,
        "cv_f1": round(f1, 4),
        "cv_precision": round(p, 4),
        "cv_recall": round(r, 4),
        "escalated": round(escalated, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="deepset train.jsonl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the .npz")
    parser.add_argument("--cache", type=Path, default=None, help="directory to cache embeddings in")
    args = parser.parse_args()

    started = time.perf_counter()
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [str(r["text"]) for r in rows]
    y = np.array([float(r["label"]) for r in rows])
    rules = np.array([match_signature(t) is not None for t in texts])
    # Sparse rows: the hashed n-grams are ~95% zeros, and dense float64 products crawl on 2 busy cores.
    feature_sets = {
        "lite": sparse.csr_matrix(lite_features(texts).astype(np.float64)),
        "full": sparse.csr_matrix(full_features(texts, _CachingEmbedder(args.cache)).astype(np.float64)),  # type: ignore[arg-type]
    }
    folds = stratified_folds(y, FOLDS, SEED)

    saved: dict[str, npt.NDArray[np.float32] | npt.NDArray[np.str_]] = {}
    summary: dict[str, object] = {}
    out_of_fold: dict[str, F64] = {}
    cv_f1: dict[str, float] = {}
    for kind, x in feature_sets.items():
        best: tuple[float, float, float, F64] | None = None  # (f1, l2, threshold, oof)
        for l2 in L2_GRID:
            oof = np.zeros(len(y))
            for k in range(FOLDS):
                val = folds[k]
                train = np.concatenate([folds[j] for j in range(FOLDS) if j != k])
                w, b = fit_logreg(x[train], y[train], l2=l2)
                oof[val] = predict(x[val], w, b)
            no_rules = np.zeros_like(rules)
            threshold, f1 = best_threshold(oof, no_rules, y)
            p, r, _ = f1_at(oof, no_rules, y, threshold)
            with_rules = f1_at(oof, rules, y, threshold)[2]
            row = {"model": kind, "l2": l2, "threshold": threshold, "cv_precision": round(p, 4)}
            row |= {
                "cv_recall": round(r, 4),
                "cv_f1": round(f1, 4),
                "cv_f1_with_rules_in_sample": round(with_rules, 4),
            }
            print(json.dumps(row), flush=True)
            if best is None or f1 > best[0]:
                best = (f1, l2, threshold, oof)
        assert best is not None
        cv_f1[kind], l2, threshold, out_of_fold[kind] = best
        w, b = fit_logreg(x, y, l2=l2)
        saved[f"{kind}_w"] = w.astype(np.float32)
        saved[f"{kind}_b"] = np.array(b, dtype=np.float32)
        saved[f"{kind}_threshold"] = np.array(threshold, dtype=np.float32)
        summary[kind] = {"l2": l2, "threshold": threshold, "cv_f1": round(cv_f1[kind], 4)}

    threshold = float(saved["full_threshold"])
    for kind, floor in (("auto", cv_f1["full"]), ("accurate", None)):
        bounds = cascade_bounds(out_of_fold["lite"], out_of_fold["full"], threshold, y, floor=floor)
        print(json.dumps({"model": kind, **bounds}), flush=True)
        saved[f"{kind}_low"] = np.array(bounds["low"], dtype=np.float32)
        saved[f"{kind}_high"] = np.array(bounds["high"], dtype=np.float32)
        summary[kind] = bounds

    data_hash = hashlib.sha256(args.data.read_bytes()).hexdigest()
    meta = {
        "data": args.data.name,
        "sha256": data_hash,
        "rows": len(rows),
        "seed": SEED,
        "folds": FOLDS,
        **summary,
    }
    saved["meta"] = np.array(json.dumps(meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **saved)  # type: ignore[arg-type]
    print(json.dumps({**meta, "out": str(args.out), "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
