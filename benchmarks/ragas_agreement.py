"""ragas vs aiapp's native RAG metrics on the same cases: agreement, time and model calls.

Cases come from the Ollama FAQ suite (``evals/data/ollama_faq.jsonl``): for each row the reference
answer is also the gold passage, and a seeded variant decides the answer and the retrieved hits —
``faithful`` (the row's own statements, gold ranked first), ``mixed`` (plus one statement from an
unrelated row, gold ranked second), ``unfaithful`` (another row's statements) and ``context_miss``
(the right answer, only distractor passages). So every case has known labels: a statement is
supported iff its text is in a retrieved passage, a passage is relevant iff it holds a statement of
the reference, and the answer is on topic iff its statements come from the case's own row.

Judges:

1. ``stub``: a deterministic judge with exactly those verdicts, answering every ragas prompt (its
   JSON ``input:`` block, by reply schema) and every aiapp prompt (numbered items) from the labels;
   ragas's statement extraction gets the same sentence split aiapp uses. With identical judgments,
   what is left to disagree is each library's metric definition and aggregation.
2. ``llm``: the ``judge`` route of ``configs/aiapp.yaml`` (an LLM), when its API key is set;
   otherwise one ``skipped`` line says why.

Per metric, one JSON line: Spearman ρ between the two engines' values, Cohen's κ on verdicts
binarised at 0.5 (``aiapp.evals.scorers._agreement``), mean |difference|, each engine's agreement
with the known labels, unscored counts, wall time and model calls. ``context_precision_ap``
compares ragas's (rank-aware, average precision) value with aiapp's ``average_precision`` metadata;
``context_precision`` uses aiapp's main value (share of relevant passages). The summary line
compares ragas's cost against native's (the reference, measured in the same run).

Usage: python benchmarks/ragas_agreement.py [--cases 24] [--llm-cases 12] [--strictness 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AIAPP_HOME", tempfile.mkdtemp(prefix="aiapp-ragas-bench-"))

import numpy as np

from _common import emit
from aiapp.config import Settings, load_settings
from aiapp.evals import Case, Output, Sample, Score, build_scorer
from aiapp.evals.scorers._agreement import measure
from aiapp.evals.scorers._judge_base import judge_unavailable
from aiapp.evals.scorers._rag import split_statements
from aiapp.evals.scorers._ragas import import_ragas
from aiapp.gateway import Gateway, Model
from aiapp.gateway.embedders import DEFAULT_EMBEDDER, build_embedder
from aiapp.testing import FakeModel
from aiapp.types import CallOptions, Completion, Hit, Message

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "evals" / "data" / "ollama_faq.jsonl"
KINDS = ("faithful", "mixed", "unfaithful", "context_miss")
METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
#: Per engine and metric: wall seconds, judge calls, tokens (the stub's are FakeModel word counts), USD.
COST_KEYS = ("s", "calls", "tokens", "cost_usd")


def norm(text: str) -> str:
    """Whitespace-collapsed, lower-cased text: how the stub judge compares statements with passages."""
    return " ".join(text.split()).lower()


# -- cases ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One FAQ row: its question, reference answer (= gold passage) and checkable statements."""

    question: str
    answer: str
    statements: list[str]


@dataclass(frozen=True)
class LabelledCase:
    """A case with the labels a perfect judge would give."""

    sample: Sample
    kind: str
    truth: dict[str, float]


def load_rows() -> list[Row]:
    """FAQ rows with at least two statements found verbatim in their own answer."""
    rows = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        found = [s for s in split_statements(data["answer"]) if norm(s) in norm(data["answer"])]
        if len(found) >= 2:
            rows.append(Row(data["question"], data["answer"], found))
    return rows


def build_cases(rows: list[Row], count: int, seed: int = 19) -> list[LabelledCase]:
    """``count`` labelled cases cycling through :data:`KINDS` (seeded choice of the other rows)."""
    rng = random.Random(seed)
    cases = []
    for n in range(count):
        i = n % len(rows)
        kind = KINDS[n % len(KINDS)]
        others = [j for j in range(len(rows)) if j != i]
        j, k, m = rng.sample(others, 3)
        own, other = rows[i].statements[:2], rows[k].statements[:1]
        passages = {"faithful": [i, j], "mixed": [j, i], "unfaithful": [i, j], "context_miss": [j, m]}[kind]
        statements = {
            "faithful": own,
            "mixed": own + other,
            "unfaithful": rows[k].statements[:2],
            "context_miss": own,
        }[kind]
        hits = [Hit(text=rows[p].answer, source=f"faq#{p}") for p in passages]
        context = norm("\n".join(h.text for h in hits))
        relevant = [p == i for p in passages]
        ref_statements = split_statements(rows[i].answer)
        truth = {
            "faithfulness": sum(norm(s) in context for s in statements) / len(statements),  # as split
            "answer_relevancy": 0.0 if kind == "unfaithful" else 1.0,
            "context_precision": sum(relevant) / len(relevant),
            "context_precision_ap": average_precision(relevant),
            "context_recall": sum(norm(s) in context for s in ref_statements) / len(ref_statements),
        }
        sample = Sample(
            case=Case(id=f"faq{i}-{kind}", input=rows[i].question, expected=rows[i].answer),
            output=Output(text="\n\n".join(statements), hits=hits),
        )
        cases.append(LabelledCase(sample, kind, truth))
    return cases


def average_precision(relevant: Sequence[bool]) -> float:
    """Mean precision@i over relevant ranks (0 when none)."""
    found, total = 0, 0.0
    for rank, ok in enumerate(relevant, start=1):
        if ok:
            found += 1
            total += found / rank
    return total / found if found else 0.0


# -- the stub judge ---------------------------------------------------------------------------------


class StubJudge:
    """Answers ragas's and aiapp's judge prompts with the labels (see the module docstring)."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def source_question(self, response: str) -> str:
        """The question of the row whose answer holds the response's first statement."""
        first = norm(split_statements(response)[0]) if split_statements(response) else ""
        for row in self.rows:
            if first and first in norm(row.answer):
                return row.question
        return ""

    def __call__(self, messages: list[Message], options: CallOptions) -> str:
        prompt = messages[-1].content
        schema = options.response_format.name if options.response_format else ""
        if schema == "ItemVerdicts":
            return self.aiapp_items(prompt)
        data = json.loads(prompt.rsplit("\ninput: ", 1)[1].rsplit("\nOutput:", 1)[0])
        if schema == "StatementGeneratorOutput":
            return json.dumps({"statements": split_statements(data["answer"])})
        if schema == "NLIStatementOutput":
            ctx = norm(data["context"])
            rows = [
                {"statement": s, "reason": "-", "verdict": int(norm(s) in ctx)} for s in data["statements"]
            ]
            return json.dumps({"statements": rows})
        if schema == "ContextRecallOutput":
            ctx = norm(data["context"])
            rows = [
                {"statement": s, "reason": "-", "attributed": int(norm(s) in ctx)}
                for s in split_statements(data["answer"])
            ]
            return json.dumps({"classifications": rows})
        if schema == "ContextPrecisionOutput":
            ctx = norm(data["context"])
            useful = any(norm(s) in ctx for s in split_statements(data["answer"]))
            return json.dumps({"reason": "-", "verdict": int(useful)})
        if schema == "AnswerRelevanceOutput":
            return json.dumps({"question": self.source_question(data["response"]), "noncommittal": 0})
        raise ValueError(f"stub judge: unexpected reply schema {schema!r}")

    @staticmethod
    def aiapp_items(prompt: str) -> str:
        def block(tag: str) -> str:
            found = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", prompt, re.S)
            return found.group(1) if found else ""

        label = "statements" if "<statements>" in prompt else "passages"
        items = re.findall(r"^(\d+)\. (.*)$", block(label), re.M)
        if label == "statements":
            ctx = norm(block("context"))
            verdicts = [norm(text) in ctx for _, text in items]
        else:
            refs = [norm(s) for s in split_statements(block("reference_answer"))]
            verdicts = [any(r in norm(text) for r in refs) for _, text in items]
        rows = [
            {"index": int(n), "reasoning": "-", "verdict": v}
            for (n, _), v in zip(items, verdicts, strict=True)
        ]
        return json.dumps({"verdicts": rows})


class CountingModel(Model):
    """Counts the calls (and tokens, cost) that reach the judge model it wraps."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0
        self.tokens = 0
        self.cost_usd = 0.0
        self.unpriced = 0

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        self.calls += 1
        completion = await self.inner.acomplete(messages, options)
        self.tokens += completion.usage.total_tokens
        if completion.usage.cost_usd is None:
            self.unpriced += 1  # unknown price: the cost is reported as unknown, never as 0
        else:
            self.cost_usd += completion.usage.cost_usd
        return completion

    def reset(self) -> None:
        self.calls, self.tokens, self.cost_usd, self.unpriced = 0, 0, 0.0, 0


# -- running and comparing --------------------------------------------------------------------------


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's ρ (average ranks for ties); ``None`` when either side is constant or n < 3."""
    if len(a) < 3:
        return None

    def ranks(values: Sequence[float]) -> np.ndarray:
        order = np.argsort(values, kind="mergesort")
        out = np.empty(len(values))
        sorted_vals = np.asarray(values)[order]
        i = 0
        while i < len(values):
            j = i
            while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
                j += 1
            out[order[i : j + 1]] = (i + j) / 2 + 1
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def paired_rho(a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    """Spearman's ρ over the items both sides scored."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return spearman([x for x, _ in pairs], [y for _, y in pairs])


def kappa(a: Sequence[float | None], b: Sequence[float | None], cut: float = 0.5) -> dict[str, Any]:
    """Cohen's κ on values binarised at ``cut`` (unscored stays missing)."""
    # 1e-6 slack: ragas adds 1e-10 to its average-precision denominator, so its 0.5 is 0.4999999999
    rows = [[None if v is None else float(v >= cut - 1e-6) for v in side] for side in (a, b)]
    result = measure(rows, method="kappa", weights=None)
    return {
        "kappa": None if result.value is None else round(result.value, 3),
        "kappa_note": result.reason or None,
    }


def values(scores: Sequence[Score], key: str | None = None) -> list[float | None]:
    """Score values (or a metadata number), ``None`` where unscored."""
    out: list[float | None] = []
    for s in scores:
        if not s.scored:
            out.append(None)
        else:
            out.append(float(s.metadata[key]) if key else float(s.value or 0.0))
    return out


async def run_engine(
    scorer: Any, cases: list[LabelledCase], counter: CountingModel
) -> tuple[list[Score], dict[str, Any]]:
    """Score every case in order; returns the scores and the cost (seconds, judge calls, tokens)."""
    counter.reset()
    start = time.perf_counter()
    scores = [await scorer.ascore(c.sample) for c in cases]
    cost = {"s": time.perf_counter() - start, "calls": counter.calls, "tokens": counter.tokens}
    return scores, {**cost, "cost_usd": None if counter.unpriced else counter.cost_usd}


def compare(
    metric: str, judge: str, cases: list[LabelledCase], ragas: list[float | None], native: list[float | None]
) -> dict[str, Any]:
    """One metric's agreement line."""
    truth: list[float | None] = [c.truth[metric] for c in cases]
    both = [(r, n) for r, n in zip(ragas, native, strict=True) if r is not None and n is not None]
    rho, r_truth, n_truth = paired_rho(ragas, native), paired_rho(ragas, truth), paired_rho(native, truth)
    return {
        "bench": "ragas_agreement",
        "judge": judge,
        "metric": metric,
        "cases": len(cases),
        "paired": len(both),
        "spearman": None if rho is None else round(rho, 3),
        **kappa(ragas, native),
        "mean_abs_diff": round(float(np.mean([abs(r - n) for r, n in both])), 4) if both else None,
        "ragas_vs_labels_spearman": None if r_truth is None else round(r_truth, 3),
        "native_vs_labels_spearman": None if n_truth is None else round(n_truth, 3),
        "ragas_vs_labels_kappa": kappa(ragas, truth)["kappa"],
        "native_vs_labels_kappa": kappa(native, truth)["kappa"],
        "ragas_unscored": sum(v is None for v in ragas),
        "native_unscored": sum(v is None for v in native),
    }


async def bench(
    judge: str, gateway: Gateway, counter: CountingModel, cases: list[LabelledCase], strictness: int
) -> dict[str, Any]:
    """Both engines, every metric, on ``cases``; prints one line per metric and returns the totals."""
    embedder = build_embedder(DEFAULT_EMBEDDER)
    embedder.embed(["warm up"])  # the local model's load is not a metric's cost
    totals: dict[str, float | None] = {
        f"{engine}_{key}": 0.0 if key in ("s", "cost_usd") else 0
        for engine in ("ragas", "native")
        for key in COST_KEYS
    }
    for metric in METRICS:
        native_opts: dict[str, Any] = (
            {"embedder": embedder} if metric == "answer_relevancy" else {"method": "judge"}
        )
        ragas_opts: dict[str, Any] = (
            {"embedder": embedder, "strictness": strictness} if metric == "answer_relevancy" else {}
        )
        native = build_scorer(metric, native_opts, gateway=gateway)
        ragas = build_scorer(f"ragas_{metric}", ragas_opts, gateway=gateway)
        ragas.ragas_metric()  # built once, outside the timing (as a suite run would)
        r_scores, r_cost = await run_engine(ragas, cases, counter)
        n_scores, n_cost = await run_engine(native, cases, counter)
        cost = {
            f"{engine}_{key}": c[key]
            for engine, c in (("ragas", r_cost), ("native", n_cost))
            for key in COST_KEYS
        }
        for key, value in cost.items():
            totals[key] = None if value is None or totals[key] is None else totals[key] + value
        emit(
            {
                **compare(metric, judge, cases, values(r_scores), values(n_scores)),
                **{k: round(v, 4) if isinstance(v, float) else v for k, v in cost.items()},
                "ragas_unscored_reasons": sorted({s.reason for s in r_scores if not s.scored})[:3],
            }
        )
        if metric == "context_precision":
            emit(
                {
                    **compare(
                        "context_precision_ap",
                        judge,
                        cases,
                        values(r_scores),
                        values(n_scores, "average_precision"),
                    ),
                    "note": "ragas's value vs aiapp's average_precision metadata (same rank-aware definition)",
                }
            )
    return totals


def llm_gateway() -> tuple[Gateway, CountingModel] | str:
    """The configured judge route wrapped in a call counter, or why it cannot judge here."""
    settings = load_settings()
    base = Gateway(settings)
    why = judge_unavailable(base, "judge")
    if why is not None:
        return why
    counter = CountingModel(base.model("judge"))
    return Gateway(settings, models={"judge": counter}), counter


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--llm-cases", type=int, default=12)
    parser.add_argument("--strictness", type=int, default=3, help="questions ragas generates per answer")
    args = parser.parse_args()

    start = time.perf_counter()
    import_ragas()
    emit({"bench": "ragas_agreement", "step": "import_ragas", "s": round(time.perf_counter() - start, 3)})
    rows = load_rows()
    cases = build_cases(rows, args.cases)

    counter = CountingModel(FakeModel(default=StubJudge(rows)))
    stub = await bench(
        "stub", Gateway(Settings(), models={"judge": counter}), counter, cases, args.strictness
    )
    summary: dict[str, Any] = {"bench": "ragas_agreement", "summary": True, "cases": len(cases), "stub": stub}

    llm = llm_gateway()
    if isinstance(llm, str):
        emit({"bench": "ragas_agreement", "judge": "llm", "skipped": llm})
    else:
        gateway, llm_counter = llm
        summary["llm"] = await bench("llm", gateway, llm_counter, cases[: args.llm_cases], args.strictness)
    for side in ("stub", "llm"):
        if side in summary:
            t = {k: None if v is None else round(v, 4) for k, v in summary[side].items()}
            for key in ("s", "calls", "tokens"):
                ref, value = t[f"native_{key}"], t[f"ragas_{key}"]  # native: the reference, same run
                t[f"{key}_ratio_ragas_over_native"] = (
                    round(value / ref, 2) if ref and value is not None else None
                )
            summary[side] = t
    emit(summary)


if __name__ == "__main__":
    asyncio.run(main())
