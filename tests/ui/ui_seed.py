"""Seeding for the console tests: a trace store, two eval runs of a judged suite, a review queue, prompts."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aiapp import evals
from aiapp.config import Settings
from aiapp.evals._review import Queue, create_queue, items_from_run
from aiapp.evals.scorers._human import Rubric
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel
from aiapp.tracing import SpanRecord, TraceStore

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
QUESTIONS = {f"q{n}": f"question number {n}" for n in range(1, 7)}
#: The judge's 1–5 grade per case (a FakeModel serves the judge route).
JUDGE = {"q1": 5, "q2": 4, "q3": 2, "q4": 1, "q5": 4, "q6": 2}
ROUTES = ("local", "openai")
MODELS = {"local": "local/extractive", "openai": "openai/gpt-4o-mini"}


@dataclass
class Seeded:
    """Where the seeded console's files are."""

    root: Path
    home: Path
    trace_ids: list[str]
    suite: str
    runs: list[str]


def _judge_reply(messages: Any, options: Any) -> str:
    text = " ".join(str(m.content) for m in messages)
    case = next(c for c, q in QUESTIONS.items() if q in text)
    return json.dumps({"reasoning": "graded", "score": JUDGE[case]})


def _seed_traces(path: Path, now: float) -> list[str]:
    store = TraceStore(path)
    ids = []
    for n in range(60):
        trace_id = f"trace{n:04d}" + "a" * 24
        route = ROUTES[n % 2]
        started = now - (60 - n) * 600  # every 10 minutes over the last 10 hours
        error = n % 13 == 0
        question = "How do I rotate my API key?" if n % 3 == 0 else f"Where are the logs stored? ({n})"
        answer = "Rotate it under Settings → Keys [1]." if n % 3 == 0 else "Logs live in ~/.ollama/logs [1]."
        ids.append(trace_id)
        root = SpanRecord(
            span_id=f"{trace_id}-app",
            trace_id=trace_id,
            kind="app",
            name="rag",
            started_at=started,
            duration_ms=40.0 + n,
            status="error" if error else "ok",
            error="ProviderError: boom" if error else None,
            route=route,
            prompt_ref="support_answer@v2" if n % 4 else "support_answer@v1",
            input=question,
            output=None if error else answer,
        )
        retrieval = SpanRecord(
            span_id=f"{trace_id}-ret",
            trace_id=trace_id,
            parent_id=root.span_id,
            kind="retrieval",
            name="handbook",
            started_at=started + 0.001,
            duration_ms=6.0,
            input=question,
            output="[1] docs/api.md (0.812)\n[2] docs/faq.md (0.640)",
            attributes={
                "k": 2,
                "hits": [
                    {"source": "docs/api.md", "chunk_id": "api-3", "score": 0.812},
                    {"source": "docs/faq.md", "chunk_id": "faq-1", "score": 0.64},
                ],
            },
        )
        guards = [
            {
                "name": "pii",
                "stage": "input",
                "passed": n % 5 != 0,
                "action": "allow" if n % 5 else "redact",
                "latency_ms": 0.2,
                **({} if n % 5 else {"reason": "an email address"}),
            }
        ]
        llm = SpanRecord(
            span_id=f"{trace_id}-llm",
            trace_id=trace_id,
            parent_id=root.span_id,
            kind="llm",
            name=route,
            started_at=started + 0.008,
            duration_ms=30.0 + (n % 10) * 5,
            status="error" if error else "ok",
            route=route,
            model=MODELS[route],
            deployments=[MODELS[route]],
            attempts=1,
            input_tokens=120 + n,
            output_tokens=30,
            cost_usd=None if route == "local" else 0.0001 * (1 + n % 3),
            cache_hit=n % 4 == 1,
            prompt_ref=root.prompt_ref,
            prompt_hash="abc123",
            input=[
                {"role": "system", "content": "Answer from the context."},
                {"role": "user", "content": question},
            ],
            output=None if error else answer,
            attributes={"guards": guards, "cache": "hit" if n % 4 == 1 else "miss"},
        )
        store.record(root)
        store.record(retrieval)
        store.record(llm)
        if n % 7 == 0:
            store.record(
                SpanRecord(
                    span_id=f"{trace_id}-tool",
                    trace_id=trace_id,
                    parent_id=root.span_id,
                    kind="tool",
                    name="calculator",
                    started_at=started + 0.03,
                    duration_ms=1.0,
                    input={"expression": "2+2"},
                    output="4",
                )
            )
    store.flush()
    for n in range(0, 60, 6):
        store.add_feedback(ids[n], 1.0 if n % 12 else -1.0, "thanks" if n % 12 else "wrong answer")
    store.close()
    return ids


def seed(tmp_path: Path, aiapp_home: Path) -> Seeded:
    """A repository root and AIAPP_HOME holding everything the console shows."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "prompts", root / "prompts")
    (root / "evals").mkdir(parents=True)
    sys.path.insert(0, str(HERE))
    rows = [{"id": c, "question": q, "answer": f"answer {c[1:]}"} for c, q in QUESTIONS.items()]
    (root / "evals" / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = []
    settings = Settings()
    settings.home = aiapp_home
    for target in ("ui_targets:good", "ui_targets:half"):
        suite = {
            "name": "support",
            "dataset": {"path": "data.jsonl"},
            "target": {"callable": target},
            "scorers": [
                "exact_match",
                {"judge_rubric": {"criteria": "Answers the question.", "min_agreement": 0.6}},
            ],
            "gate": {"metrics": {"exact_match": {"min": 0.5}, "judge_rubric": {"min": 0.7}}},
        }
        (root / "evals" / "support.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
        gw = Gateway(settings, models={"judge": FakeModel(default=_judge_reply)})
        with gw:  # closing flushes the judge calls' spans: 12 more model calls in the store
            result = evals.run(evals.prepare(root / "evals" / "support.yaml", gw))
        runs.append(result.run_dir.name)
        time.sleep(0.02)  # distinct modification times: the second run is the newest
    sys.path.remove(str(HERE))
    create_queue(
        root,
        Queue(
            name="support",
            source="suite",
            suite="support",
            run=runs[-1],
            rubric=Rubric(criteria="Answers the question."),
        ),
        items_from_run(result.iter_rows()),
    )
    ids = _seed_traces(settings.traces_path, time.time())
    return Seeded(root=root, home=aiapp_home, trace_ids=ids, suite="support", runs=runs)
