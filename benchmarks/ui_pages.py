"""Console page latency over a large trace store: the dashboard, a filtered trace list, a trace page.

Seeds ``--traces`` traces (default 100k; each an app span with a retrieval and a model-call child,
5% with feedback, ~8% errors, every fifth with a guard trigger) into a fresh ``traces.db`` through
:class:`aiapp.tracing.TraceStore`, starts ``aiapp ui`` on 127.0.0.1 in its own process and times
HTTP requests to each page. References measured in the same run: ``GET /health`` on the same
server (the HTTP floor) and a bare ``SELECT count(*) FROM spans`` on the same file.

Goal: page response p95 ≤ 200 ms each.

    .venv/bin/python benchmarks/ui_pages.py [--traces 100000] [--requests 30]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, summary
from aiapp.tracing import SpanRecord, TraceStore

GOAL_MS = 200.0
ROUTES = ("local", "openai", "anthropic")
MODELS = {
    "local": "local/extractive",
    "openai": "openai/gpt-4o-mini",
    "anthropic": "anthropic/claude-3-5-haiku",
}
PROMPTS = ("support_answer@v1", "support_answer@v2", "ticket_triage@v1")


def seed(path: Path, traces: int, now: float) -> list[str]:
    """Write ``traces`` traces spread over the last 7 days; returns their ids."""
    rng = random.Random(0)
    store = TraceStore(path, max_batch=5000)
    ids: list[str] = []
    span = 7 * 86400
    for n in range(traces):
        trace_id = f"{n:016x}{rng.getrandbits(64):016x}"
        ids.append(trace_id)
        route = ROUTES[n % 3]
        started = now - span + span * n / traces
        error = rng.random() < 0.08
        question = f"How do I configure feature {n % 500} on plan {n % 7}?"
        answer = f"Open settings and enable feature {n % 500} [1]."
        prompt = PROMPTS[n % 3]
        store.record(
            SpanRecord(
                span_id=trace_id[:16] + "a",
                trace_id=trace_id,
                kind="app",
                name="rag",
                started_at=started,
                duration_ms=60 + rng.random() * 400,
                status="error" if error else "ok",
                route=route,
                prompt_ref=prompt,
                input=question,
                output=None if error else answer,
            )
        )
        store.record(
            SpanRecord(
                span_id=trace_id[:16] + "r",
                trace_id=trace_id,
                parent_id=trace_id[:16] + "a",
                kind="retrieval",
                name="handbook",
                started_at=started + 0.001,
                duration_ms=3 + rng.random() * 5,
                input=question,
                output="[1] docs/settings.md (0.81)",
                attributes={
                    "k": 5,
                    "hits": [{"source": "docs/settings.md", "chunk_id": f"s-{n % 50}", "score": 0.81}],
                },
            )
        )
        guards = [
            {"name": "pii", "stage": "input", "passed": n % 5 != 0, "action": "allow" if n % 5 else "redact"}
        ]
        store.record(
            SpanRecord(
                span_id=trace_id[:16] + "l",
                trace_id=trace_id,
                parent_id=trace_id[:16] + "a",
                kind="llm",
                name=route,
                started_at=started + 0.01,
                duration_ms=50 + rng.random() * 350,
                status="error" if error else "ok",
                route=route,
                model=MODELS[route],
                deployments=[MODELS[route]],
                attempts=1,
                input_tokens=400 + n % 300,
                output_tokens=60 + n % 90,
                cost_usd=None if route == "local" else 0.0002,
                cache_hit=n % 6 == 0,
                prompt_ref=prompt,
                input=[{"role": "user", "content": question}],
                output=None if error else answer,
                attributes={"guards": guards},
            )
        )
        if n % 20 == 0:
            store.flush()
            store.add_feedback(trace_id, 1.0 if n % 40 else -1.0)
    store.close()
    return ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as reply:
        reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{url}: HTTP {reply.status}")
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="aiapp-ui-bench-"))
    root = Path(__file__).resolve().parents[1]
    t0 = time.perf_counter()
    ids = seed(home / "traces.db", args.traces, time.time())
    seed_s = time.perf_counter() - t0
    spans = 3 * args.traces
    port = _free_port()
    env = {**os.environ, "AIAPP_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiapp.cli", "ui", "--port", str(port), "--root", str(root)],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(base + "/health")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("aiapp ui did not start") from None
                time.sleep(0.2)
        rng = random.Random(1)
        pages = {
            "health (reference)": lambda: base + "/health",
            "dashboard": lambda: base + "/",
            "dashboard filtered": lambda: base + "/?route=openai&prompt=support_answer@v2",
            "trace list filtered": lambda: base + "/traces?route=openai&status=error",
            "trace list text search": lambda: base + "/traces?text=feature+42+on",
            "trace page": lambda: base + "/traces/" + rng.choice(ids),
        }
        db = sqlite3.connect(home / "traces.db")
        count_ms = []
        for _ in range(args.requests):
            t = time.perf_counter()
            db.execute("SELECT count(*) FROM spans").fetchone()
            count_ms.append((time.perf_counter() - t) * 1000)
        db.close()
        emit(
            {
                "bench": "ui_pages",
                "reference": "sqlite count(*) spans",
                "spans": spans,
                **summary(count_ms),
                "p95_ms": round(percentile(count_ms, 95), 3),
            }
        )
        cold = _get(base + "/")  # the first load folds every existing span into the rollup
        emit(
            {
                "bench": "ui_pages",
                "page": "dashboard first load (builds the rollup)",
                "traces": args.traces,
                "ms": round(cold, 1),
            }
        )
        for name, url in pages.items():
            for _ in range(3):  # warm the page and the page cache
                _get(url())
            times = [_get(url()) for _ in range(args.requests)]
            p95 = percentile(times, 95)
            emit(
                {
                    "bench": "ui_pages",
                    "page": name,
                    "traces": args.traces,
                    "spans": spans,
                    "requests": args.requests,
                    **summary(times),
                    "p95_ms": round(p95, 3),
                    **({} if "reference" in name else {"goal_p95_ms": GOAL_MS, "meets_goal": p95 <= GOAL_MS}),
                }
            )
        emit(
            {
                "bench": "ui_pages",
                "seed_s": round(seed_s, 1),
                "db_mb": round((home / "traces.db").stat().st_size / 2**20, 1),
            }
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
