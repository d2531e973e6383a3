"""Fault injection: a two-deployment route whose primary goes through an outage, then recovers.

The stub server (a child process) makes the primary answer 429 (Retry-After: 1), then 500, then
time out, then return garbage — each for a stretch of wall time — and then heals. Worker threads
call the route throughout. The same schedule runs twice: with the circuit breaker (the default)
and, as the reference, with the breaker off (``breaker: {failures: 0}``), which is how a router
without cooldown behaves: every request keeps trying the dead primary first.

Every line is JSON; the last is the summary, with ``requests``, ``faults_injected``,
``failed_requests``, ``breaker_opened``, ``breaker_recovered`` (goal: 0 failed, both true).

Usage: python benchmarks/gateway_faults.py [--phase-s 1.5] [--workers 4] [--think-ms 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("AIAPP_HOME", tempfile.mkdtemp(prefix="aiapp-bench-"))

from _common import emit, summary
from aiapp.config import BreakerPolicy, Deployment, RetryPolicy, Route, Settings, TracingSettings
from aiapp.errors import AiappError
from aiapp.gateway import Gateway
from aiapp.testing import StubServer

PHASES = [
    ("429", {"retry_after": 1}),
    ("500", {}),
    ("timeout", {"seconds": 2}),
    ("garbage", {}),
]


@dataclass
class Run:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    primary_attempts: int = 0
    primary_attempts_in_outage: int = 0
    served_by_primary_after: int = 0
    errors: list[str] = field(default_factory=list)
    faults_injected: int = 0
    stub_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def run(name: str, stub: StubServer, breaker: BreakerPolicy, args: argparse.Namespace) -> tuple[Run, dict]:
    route = Route(
        deployments=[
            Deployment(model="vllm/primary", api_base=stub.base_url, timeout_s=args.attempt_timeout_s),
            Deployment(model="vllm/backup", api_base=stub.base_url, timeout_s=5),
        ],
        retries=RetryPolicy(attempts=1, backoff_s=0.05, max_wait_s=2),
        breaker=breaker,
    )
    settings = Settings(routes={"faulty": route}, tracing=TracingSettings(enabled=True))
    gw = Gateway(settings)
    primary = f"vllm/primary@{stub.base_url}"
    result = Run(name)
    outage = threading.Event()
    healed = threading.Event()
    stop = threading.Event()

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            t0 = time.perf_counter()
            try:
                reply = gw.complete(f"worker {n} request {i}", model="faulty")
                tried = reply.tried
                ok = True
            except AiappError as exc:
                tried, ok = (), False
                with result.lock:
                    result.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            elapsed = (time.perf_counter() - t0) * 1000.0
            with result.lock:
                result.latencies_ms.append(elapsed)
                if not ok:
                    result.failed += 1
                hits = sum(1 for label in tried if label == primary)
                result.primary_attempts += hits
                if outage.is_set() and not healed.is_set():
                    result.primary_attempts_in_outage += hits
                if healed.is_set() and ok and reply.deployment == primary:
                    result.served_by_primary_after += 1
            time.sleep(args.think_ms / 1000.0)

    stub.reset()
    for _ in range(3):  # imports, HTTP clients, the trace store: ready before the clock starts
        gw.complete("warm-up", model="faulty")
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(args.workers)]
    for t in threads:
        t.start()
    time.sleep(args.phase_s / 2)  # healthy warm-up
    outage.set()
    for mode, params in PHASES:
        stub.inject(mode, count=10**6, model="primary", **params)
        time.sleep(args.phase_s)
        stats = stub.stats()
        result.faults_injected += stats["faults_injected"]
        result.stub_requests += stats["requests"]
        stub.reset()  # ends this phase's fault (and zeroes the counters, banked above)
    healed.set()
    time.sleep(args.recover_s)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    stats = stub.stats()
    result.stub_requests += stats["requests"]
    health = gw.health.snapshot()[primary]
    gw.close()
    return result, health


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--phase-s", type=float, default=1.5, help="seconds each fault lasts")
    parser.add_argument("--recover-s", type=float, default=2.0, help="healthy seconds after the outage")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--think-ms", type=float, default=20.0, help="pause between a worker's requests")
    parser.add_argument("--attempt-timeout-s", type=float, default=0.25, help="the primary's timeout_s")
    parser.add_argument("--cooldown-s", type=float, default=0.5, help="breaker cooldown")
    args = parser.parse_args()

    with StubServer.spawn() as stub:
        on, on_health = run("breaker", stub, BreakerPolicy(failures=3, cooldown_s=args.cooldown_s), args)
        off, off_health = run("no_breaker_reference", stub, BreakerPolicy(failures=0), args)

    for r, health in ((on, on_health), (off, off_health)):
        emit(
            {
                "run": r.name,
                "requests": len(r.latencies_ms),
                "failed_requests": r.failed,
                "faults_injected": r.faults_injected,
                "primary_attempts_during_outage": r.primary_attempts_in_outage,
                "served_by_primary_after_recovery": r.served_by_primary_after,
                "primary_health": health,
                "errors": r.errors[:5],
                **summary(r.latencies_ms),
            }
        )
    p_on, p_off = summary(on.latencies_ms), summary(off.latencies_ms)
    emit(
        {
            "benchmark": "gateway_faults",
            "requests": len(on.latencies_ms),
            "faults_injected": on.faults_injected,
            "failed_requests": on.failed,
            "breaker_opened": on_health["opened"] > 0,
            "breaker_recovered": on_health["recovered"] > 0
            and on_health["state"] == "closed"
            and on.served_by_primary_after > 0,
            "breaker_opened_times": on_health["opened"],
            "primary_attempts_during_outage": on.primary_attempts_in_outage,
            "reference_primary_attempts_during_outage": off.primary_attempts_in_outage,
            "p99_ms": p_on["p99_ms"],
            "reference_p99_ms": p_off["p99_ms"],
            "reference_failed_requests": off.failed,
            "phases": [mode for mode, _ in PHASES],
            "phase_s": args.phase_s,
            "goal_met": on.failed == 0 and on_health["opened"] > 0 and on_health["recovered"] > 0,
        }
    )


if __name__ == "__main__":
    main()
