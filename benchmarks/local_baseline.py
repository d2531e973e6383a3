"""How good is the ``local/extractive`` baseline? Measured on ClapNQ dev and the Ollama FAQ.

Data (see ``../shared/data/SOURCES.md``; override the folder with ``AIAPP_DATA_DIR``):

* ``clapnq_dev/annotated/clapnq_dev_answerable.jsonl``: 300 Natural Questions with their gold Wikipedia
  passage and the passage sentences annotators selected as the answer. (The SQuAD dev copy in the data
  folder has no paragraphs, so ClapNQ is the paragraph-QA set here.)
* ``clapnq_dev/annotated/clapnq_dev_unanswerable.jsonl``: 300 questions whose passage is on topic but
  does not answer them.
* ``docs_ollama/docs/faq.mdx``: the FAQ split at its ``##`` headings into numbered sources; the heading
  is the question and the model must cite the right section.

Metrics:

* ``answer_in_output_rate``: share of answerable questions whose output contains at least one
  annotator-selected gold sentence (compared after lowercasing and keeping only words).
* ``answer_token_recall``: mean share of the gold long-form answer's content words found in the output.
* ``no_answer_rate``: share of answerable questions answered with ``NO_ANSWER`` (lower is better).
* ``mismatched_context_no_answer_rate``: each answerable question paired with another example's
  passage; share answered ``NO_ANSWER`` (higher is better).
* ``unanswerable_no_answer_rate``: the same for ClapNQ's unanswerable questions with their own passage.
* ``precision_when_answered``: ``answer_in_output_rate`` over the questions the model did answer.
* ``reference_lead_answer_in_output_rate``: a trivial reference measured in the same run, the first
  ``max_sentences`` sentences of the passage (it never abstains); ``..._precision_on_same_questions``
  is its hit rate on the questions the model answered, the like-for-like comparison.

The thresholds in ``aiapp.gateway.providers.local`` were tuned on examples 0-149 of each file; the
``heldout`` split is examples 150-299. Prints one JSON object per result, then a summary line.
Not part of the test suite.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from aiapp.gateway.providers.local import NO_ANSWER, ExtractiveModel
from aiapp.types import Message

DATA = Path(os.environ.get("AIAPP_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
_WORDS = re.compile(r"[^\W_]+")
_FUNCTION_WORDS = frozenset(
    re.findall(r"\w+", "the a an of and or to in on at is are was were be by for with as it its")
)


def _norm(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


def _load(name: str) -> list[dict[str, Any]]:
    path = DATA / "clapnq_dev" / "annotated" / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ask(model: ExtractiveModel, question: str, context: str) -> tuple[str, float]:
    messages = [Message.system(f"<context>\n{context}\n</context>"), Message.user(question)]
    completion = model.complete(messages)
    return completion.text, completion.latency_ms


def _gold_hit(output: str, row: dict[str, Any]) -> bool:
    out = _norm(output)
    golds = [_norm(s) for answer in row["output"] for s in answer["selected_sentences"]]
    return any(g and g in out for g in golds)


def _token_recall(output: str, row: dict[str, Any]) -> float:
    out = set(_WORDS.findall(output.lower()))
    gold = [w for w in _WORDS.findall(row["output"][0]["answer"].lower()) if w not in _FUNCTION_WORDS]
    return sum(w in out for w in gold) / len(gold) if gold else 0.0


def _passage(row: dict[str, Any]) -> str:
    return "\n\n".join(p["text"] for p in row["passages"])


def _clapnq(
    split: str, rows: list[dict[str, Any]], unanswerable: list[dict[str, Any]], k: int
) -> dict[str, Any]:
    model = ExtractiveModel(max_sentences=k)
    hits = recall = no_answer = lead_hits = lead_hits_answered = 0.0
    latencies: list[float] = []
    for row in rows:
        text, ms = _ask(model, row["input"], _passage(row))
        latencies.append(ms)
        hits += _gold_hit(text, row)
        recall += _token_recall(text, row)
        no_answer += text == NO_ANSWER
        lead_hit = _gold_hit(" ".join(row["passages"][0]["sentences"][:k]), row)
        lead_hits += lead_hit
        lead_hits_answered += lead_hit and text != NO_ANSWER
    mismatched = sum(
        _ask(model, row["input"], _passage(rows[(i + len(rows) // 2) % len(rows)]))[0] == NO_ANSWER
        for i, row in enumerate(rows)
    )
    unanswered = sum(_ask(model, row["input"], _passage(row))[0] == NO_ANSWER for row in unanswerable)
    n = len(rows)
    answered = n - no_answer
    return {
        "benchmark": "local_baseline.clapnq",
        "split": split,
        "max_sentences": k,
        "n": n,
        "answer_in_output_rate": round(hits / n, 4),
        "answer_token_recall": round(recall / n, 4),
        "no_answer_rate": round(no_answer / n, 4),
        "mismatched_context_no_answer_rate": round(mismatched / n, 4),
        "unanswerable_no_answer_rate": round(unanswered / len(unanswerable), 4),
        "precision_when_answered": round(hits / answered, 4) if answered else None,
        "reference_lead_answer_in_output_rate": round(lead_hits / n, 4),
        "reference_lead_precision_on_same_questions": round(lead_hits_answered / answered, 4)
        if answered
        else None,
        "p50_ms": round(statistics.median(latencies), 3),
        "p95_ms": round(statistics.quantiles(latencies, n=20)[-1], 3),
        "mean_context_chars": round(sum(len(_passage(r)) for r in rows) / n),
    }


def _ollama_faq() -> dict[str, Any]:
    text = (DATA / "docs_ollama" / "docs" / "faq.mdx").read_text(encoding="utf-8")
    sections = re.split(r"^## (.+)$", text, flags=re.M)[1:]
    questions = sections[0::2]
    bodies = sections[1::2]
    context = "\n\n".join(f"[{i}] docs/faq.mdx\n{body.strip()}" for i, body in enumerate(bodies, 1))
    model = ExtractiveModel()
    first = cited = 0
    latencies: list[float] = []
    latencies_4kb: list[float] = []
    for i, question in enumerate(questions, 1):
        answer = model.extract(question, context)
        completion = model.complete([Message.user(f"<context>{context}</context>\n{question}")])
        latencies.append(completion.latency_ms)
        latencies_4kb.append(
            model.complete([Message.user(f"<context>{context[:4000]}</context>\n{question}")]).latency_ms
        )
        first += bool(answer.sources) and answer.sources[0] == i
        cited += i in answer.sources
    n = len(questions)
    return {
        "benchmark": "local_baseline.ollama_faq",
        "n": n,
        "context_chars": len(context),
        "first_source_accuracy": round(first / n, 4),
        "reference_first_source_accuracy": round(1 / n, 4),  # always citing [1]
        "source_cited_rate": round(cited / n, 4),
        "p50_ms": round(statistics.median(latencies), 3),
        "p50_ms_first_4000_chars": round(statistics.median(latencies_4kb), 3),
    }


def main() -> int:
    """Run every measurement and print one JSON line per result plus a summary line."""
    if not (DATA / "clapnq_dev").is_dir():
        print(json.dumps({"benchmark": "local_baseline", "skipped": f"no data folder at {DATA}"}))
        return 0
    answerable = _load("clapnq_dev_answerable.jsonl")
    unanswerable = _load("clapnq_dev_unanswerable.jsonl")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for split, lo, hi in (("tune", 0, 150), ("heldout", 150, 300), ("all", 0, 300)):
        for k in (1, 3):
            result = _clapnq(split, answerable[lo:hi], unanswerable[lo:hi], k)
            results[split, k] = result
            print(json.dumps(result))
    faq = _ollama_faq()
    print(json.dumps(faq))
    held1, held3 = results["heldout", 1], results["heldout", 3]
    summary = {
        "benchmark": "local_baseline",
        "split": "heldout",
        "answer_in_output_rate": held3["answer_in_output_rate"],
        "answer_in_output_rate_k1": held1["answer_in_output_rate"],
        "precision_when_answered_k1": held1["precision_when_answered"],
        "reference_lead_precision_on_same_questions_k1": held1["reference_lead_precision_on_same_questions"],
        "reference_lead_answer_in_output_rate": held3["reference_lead_answer_in_output_rate"],
        "no_answer_rate": held3["no_answer_rate"],
        "mismatched_context_no_answer_rate": held3["mismatched_context_no_answer_rate"],
        "unanswerable_no_answer_rate": held3["unanswerable_no_answer_rate"],
        "ollama_faq_first_source_accuracy": faq["first_source_accuracy"],
        "p50_ms": results["all", 3]["p50_ms"],
        "p50_ms_4kb": faq["p50_ms_first_4000_chars"],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
