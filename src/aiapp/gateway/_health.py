"""What a gateway knows about each deployment: its circuit breaker, any ``Retry-After`` hold, its
latency, and its rpm/tpm limiter.

State is per deployment label and shared by every route of one :class:`~aiapp.gateway.Gateway`
(a :class:`HealthBoard` per gateway), so when one route finds a deployment down, the others stop
sending it requests too. Every method takes a lock and never awaits while holding it, so the
state is safe from threads and from concurrent asyncio tasks alike.

The breaker::

    closed ──(N consecutive retryable failures)──▶ open ──(cooldown)──▶ half-open: one probe
      ▲                                             ▲                        │
      └──────────────── probe succeeds ─────────────┼──── probe fails ───────┘
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

from aiapp.config import BreakerPolicy, Limits
from aiapp.errors import CircuitOpenError, ProviderError, RateLimitError
from aiapp.gateway._clock import Clock
from aiapp.gateway._ratelimit import RateLimiter

BreakerState = Literal["closed", "open", "half_open"]

_EWMA_ALPHA = 0.3


@dataclass(frozen=True)
class Admission:
    """Whether a request may go to a deployment now; ``probe`` when it is the half-open probe."""

    ok: bool
    probe: bool = False
    reason: str = ""
    retry_after: float | None = None
    held: bool = False

    def error(self, route: str, deployment: str) -> ProviderError:
        """The error to report for a skipped deployment."""
        if self.held:
            return RateLimitError(
                self.reason, retry_after=self.retry_after, route=route, deployment=deployment
            )
        return CircuitOpenError(self.reason, retry_after=self.retry_after, route=route, deployment=deployment)


_OK = Admission(ok=True)
_PROBE = Admission(ok=True, probe=True)


class DeploymentHealth:
    """The shared state of one deployment.

    Attributes:
        label: The deployment's label.
        state: ``closed``, ``open`` or ``half_open``.
        latency_ms: Smoothed latency of successful calls (``None`` until one succeeds).
        limiter: Its rpm/tpm limiter, when configured.
        opened: How many times the breaker opened from closed.
        recovered: How many times a probe closed it again.
    """

    def __init__(self, label: str, clock: Clock) -> None:
        self.label = label
        self.clock = clock
        self.state: BreakerState = "closed"
        self.latency_ms: float | None = None
        self.limiter: RateLimiter | None = None
        self.opened = 0
        self.recovered = 0
        self.successes = 0
        self.failures = 0
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None
        self._not_before = 0.0
        self._lock = threading.Lock()

    def admit(self, policy: BreakerPolicy) -> Admission:
        """May a request go to this deployment now? Claims the probe slot when half-open."""
        with self._lock:
            now = self.clock.monotonic()
            if now < self._not_before:
                wait = self._not_before - now
                return Admission(
                    ok=False,
                    reason=f"the provider asked to retry after a wait; {wait:.1f}s left (not sent)",
                    retry_after=wait,
                    held=True,
                )
            if self.state == "closed" or policy.failures == 0:
                return _OK
            if self.state == "open":
                reopens = self._opened_at + policy.cooldown_s
                if now < reopens:
                    return Admission(
                        ok=False,
                        reason=(
                            f"circuit open after {self._consecutive} consecutive failures; "
                            f"next probe in {reopens - now:.1f}s (not sent)"
                        ),
                        retry_after=reopens - now,
                    )
                self.state = "half_open"
            if self._probe_started is None or now - self._probe_started >= policy.cooldown_s:
                self._probe_started = now
                return _PROBE
            return Admission(
                ok=False,
                reason="circuit half-open: a probe request is in flight (not sent)",
                retry_after=None,
            )

    def success(self, *, latency_ms: float | None = None) -> None:
        """Record a success: closes the breaker and updates the latency estimate."""
        with self._lock:
            self.successes += 1
            self._consecutive = 0
            if self.state != "closed":
                self.state = "closed"
                self.recovered += 1
            self._probe_started = None
            if latency_ms is not None:
                previous = self.latency_ms
                self.latency_ms = (
                    latency_ms if previous is None else previous + _EWMA_ALPHA * (latency_ms - previous)
                )

    def failure(self, policy: BreakerPolicy, *, retry_after: float | None = None) -> None:
        """Record a retryable failure; a ``retry_after`` holds the deployment for that long."""
        with self._lock:
            now = self.clock.monotonic()
            self.failures += 1
            if retry_after is not None and retry_after > 0:
                self._not_before = max(self._not_before, now + retry_after)
            if policy.failures == 0:
                return
            self._consecutive += 1
            if self.state == "half_open" or self._consecutive >= policy.failures:
                if self.state == "closed":
                    self.opened += 1
                self.state = "open"
                self._opened_at = now
                self._probe_started = None

    def trip(self) -> None:
        """Open the breaker now: the deployment is misconfigured (bad key, unknown model).

        It is tried again, as a half-open probe, after the breaker's cooldown, so fixing the key
        or model heals it without a restart.
        """
        with self._lock:
            self.failures += 1
            if self.state == "closed":
                self.opened += 1
            self.state = "open"
            self._opened_at = self.clock.monotonic()
            self._probe_started = None

    def release(self, *, probe: bool) -> None:
        """An attempt ended without a verdict on the deployment's health (e.g. a bad request)."""
        if probe:
            with self._lock:
                self._probe_started = None

    def wait_hint(self, policy: BreakerPolicy) -> float | None:
        """Seconds until a waiting request may try this deployment, or ``None`` if it should not wait.

        A ``Retry-After`` hold is worth waiting for; an open breaker is not (that is its point).
        """
        with self._lock:
            now = self.clock.monotonic()
            if policy.failures and self.state == "open" and now < self._opened_at + policy.cooldown_s:
                return None
            if policy.failures and self.state == "half_open" and self._probe_started is not None:
                return None
            return max(0.0, self._not_before - now)

    def snapshot(self) -> dict[str, Any]:
        """A plain summary (for benchmarks, ``aiapp models`` and debugging)."""
        with self._lock:
            return {
                "state": self.state,
                "consecutive_failures": self._consecutive,
                "opened": self.opened,
                "recovered": self.recovered,
                "successes": self.successes,
                "failures": self.failures,
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            }


class HealthBoard:
    """Every deployment's :class:`DeploymentHealth` in one gateway.

    Args:
        clock: Shared by breakers, holds and limiters.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._health: dict[str, DeploymentHealth] = {}

    def get(self, label: str, *, limits: Limits | None = None) -> DeploymentHealth:
        """The state of ``label`` (created on first use; ``limits`` set its limiter once)."""
        with self._lock:
            health = self._health.get(label)
            if health is None:
                health = DeploymentHealth(label, self.clock)
                self._health[label] = health
            if limits is not None and health.limiter is None and (limits.rpm or limits.tpm):
                health.limiter = RateLimiter(limits, self.clock, deployment=label)
            return health

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every known deployment's summary."""
        with self._lock:
            items = list(self._health.items())
        return {label: health.snapshot() for label, health in items}
