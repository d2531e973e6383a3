"""Prometheus metrics for ``aiapp serve``, kept in plain dicts and written in the text exposition format.

No client library: a request costs a few dict updates under one lock, and ``GET /metrics`` renders
the counters, the latency histogram and each deployment's breaker state (from the gateway's
:class:`~aiapp.gateway.HealthBoard`) on demand.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Any

from aiapp.types import Usage

#: Request latency buckets in seconds (upper bounds; ``+Inf`` is implied).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BREAKER_STATES = ("closed", "half_open", "open")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class Metrics:
    """Counters, gauges and a latency histogram for one server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)  # (endpoint, route, status)
        self.tokens: dict[tuple[str, str], int] = defaultdict(int)  # (route, input|output)
        self.cost: dict[str, float] = defaultdict(float)
        self.cache_hits: dict[str, int] = defaultdict(int)
        self.disconnects = 0
        self.in_flight = 0
        self.streams_in_flight = 0
        self._latency: dict[str, list[int]] = {}
        self._latency_sum: dict[str, float] = defaultdict(float)

    def observe(self, endpoint: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        with self._lock:
            self.requests[(endpoint, route, status)] += 1
            counts = self._latency.get(endpoint)
            if counts is None:
                counts = self._latency[endpoint] = [0] * (len(BUCKETS) + 1)
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._latency_sum[endpoint] += seconds

    def usage(self, route: str, usage: Usage | None, *, cache_hit: bool = False) -> None:
        """Add a call's tokens, cost and cache hit."""
        with self._lock:
            if usage is not None:
                self.tokens[(route, "input")] += usage.input_tokens
                self.tokens[(route, "output")] += usage.output_tokens
                if usage.cost_usd is not None:
                    self.cost[route] += usage.cost_usd
            if cache_hit:
                self.cache_hits[route] += 1

    def streams(self, delta: int) -> None:
        """Move the in-flight streams gauge."""
        with self._lock:
            self.streams_in_flight += delta

    def requests_in_flight(self, delta: int) -> None:
        """Move the in-flight requests gauge."""
        with self._lock:
            self.in_flight += delta

    def disconnected(self) -> None:
        """Count a client that went away before its reply finished."""
        with self._lock:
            self.disconnects += 1

    def render(self, health: dict[str, dict[str, Any]] | None = None) -> str:
        """The text exposition (``text/plain; version=0.0.4``)."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("aiapp_requests_total", "counter", "HTTP requests by endpoint, route and status.")
            for (endpoint, route, status), n in sorted(self.requests.items()):
                lines.append(
                    f"aiapp_requests_total{_labels(endpoint=endpoint, route=route, status=str(status))} {n}"
                )
            family(
                "aiapp_request_duration_seconds",
                "histogram",
                "Request latency (streams: until the last byte).",
            )
            for endpoint, counts in sorted(self._latency.items()):
                running = 0
                for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                    running += n
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    lines.append(
                        f"aiapp_request_duration_seconds_bucket{_labels(endpoint=endpoint, le=le)} {running}"
                    )
                lines.append(
                    f"aiapp_request_duration_seconds_sum{_labels(endpoint=endpoint)} {self._latency_sum[endpoint]}"
                )
                lines.append(f"aiapp_request_duration_seconds_count{_labels(endpoint=endpoint)} {running}")
            family("aiapp_tokens_total", "counter", "Tokens by route and kind (input, output).")
            for (route, kind), n in sorted(self.tokens.items()):
                lines.append(f"aiapp_tokens_total{_labels(route=route, kind=kind)} {n}")
            family("aiapp_cost_usd_total", "counter", "Spend in USD by route (calls with a known price).")
            for route, usd in sorted(self.cost.items()):
                lines.append(f"aiapp_cost_usd_total{_labels(route=route)} {usd}")
            family("aiapp_cache_hits_total", "counter", "Replies served from the response cache, by route.")
            for route, n in sorted(self.cache_hits.items()):
                lines.append(f"aiapp_cache_hits_total{_labels(route=route)} {n}")
            family("aiapp_client_disconnects_total", "counter", "Clients gone before their reply finished.")
            lines.append(f"aiapp_client_disconnects_total {self.disconnects}")
            family("aiapp_requests_in_flight", "gauge", "Requests being served now.")
            lines.append(f"aiapp_requests_in_flight {self.in_flight}")
            family("aiapp_streams_in_flight", "gauge", "Streams open to an upstream model now.")
            lines.append(f"aiapp_streams_in_flight {self.streams_in_flight}")
        family(
            "aiapp_breaker_state", "gauge", "Circuit breaker state per deployment (1 for the current state)."
        )
        for label, snap in sorted((health or {}).items()):
            for state in _BREAKER_STATES:
                value = 1 if snap.get("state") == state else 0
                lines.append(f"aiapp_breaker_state{_labels(deployment=label, state=state)} {value}")
        family("aiapp_deployment_failures_total", "counter", "Failed calls per deployment.")
        for label, snap in sorted((health or {}).items()):
            lines.append(
                f"aiapp_deployment_failures_total{_labels(deployment=label)} {snap.get('failures', 0)}"
            )
        return "\n".join(lines) + "\n"
