"""Helpers shared by benchmarks: percentiles and JSON output."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) of ``values`` by linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean of a list of milliseconds, rounded."""
    return {
        "p50_ms": round(percentile(values_ms, 50), 4),
        "p90_ms": round(percentile(values_ms, 90), 4),
        "p99_ms": round(percentile(values_ms, 99), 4),
        "mean_ms": round(statistics.fmean(values_ms), 4),
    }


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on its own line."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def interleaved_times(
    clients: dict[str, Callable[[], object]], *, calls: int, block: int, warmup: int = 30
) -> dict[str, list[float]]:
    """Time each client ``calls`` times, in blocks of ``block`` calls taken in rotating order.

    Interleaving keeps a noisy machine's slow spells from landing on one client only, so the ratios
    between clients hold even when absolute times drift. Returns milliseconds per call per client.
    """
    for call in clients.values():  # warm up connections, imports, caches
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in clients}
    order = list(clients)
    done = 0
    while done < calls:
        n = min(block, calls - done)
        for name in order:
            call = clients[name]
            for _ in range(n):
                t0 = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - t0) * 1000.0)
        order = order[1:] + order[:1]
        done += n
    return times
