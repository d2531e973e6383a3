"""rpm/tpm limits over a sliding minute, per route (the budget layer) or per deployment (the router).

A call takes a :class:`Ticket` before it is sent, holding one request and its estimated tokens; the
ticket is settled with the real token count afterwards. A call that does not fit is refused at
once with :class:`~aiapp.errors.LimitExceededError` carrying ``retry_after`` — nothing is sent. The
router treats a deployment at its limit like an unavailable one and fails over.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque

from aiapp.config import Limits
from aiapp.errors import LimitExceededError
from aiapp.gateway._clock import Clock

WINDOW_S = 60.0


class Ticket:
    """One admitted request: settle it with the tokens actually used."""

    __slots__ = ("_entry", "_limiter")

    def __init__(self, limiter: RateLimiter, entry: list[float]) -> None:
        self._limiter = limiter
        self._entry = entry

    def settle(self, tokens: int | None) -> None:
        """Replace the estimate with the real count (``None`` keeps the estimate)."""
        if tokens is not None:
            with self._limiter._lock:
                self._entry[1] = float(tokens)

    def cancel(self) -> None:
        """Give the slot back: the request was never sent."""
        with self._limiter._lock, contextlib.suppress(ValueError):
            self._limiter._entries.remove(self._entry)


class RateLimiter:
    """A sliding-window limiter for requests and tokens per minute.

    Args:
        limits: ``rpm`` and/or ``tpm``.
        clock: Where time comes from.
        route: Named in errors (a route's limiter).
        deployment: Named in errors (a deployment's limiter).
    """

    def __init__(
        self, limits: Limits, clock: Clock, *, route: str | None = None, deployment: str | None = None
    ) -> None:
        self.rpm = limits.rpm
        self.tpm = limits.tpm
        self.clock = clock
        self.route = route
        self.deployment = deployment
        self._lock = threading.Lock()
        self._entries: deque[list[float]] = deque()  # [admitted_at, tokens]

    def acquire(self, tokens: int) -> Ticket:
        """Admit one request using about ``tokens`` tokens, or raise ``LimitExceededError``."""
        with self._lock:
            now = self.clock.monotonic()
            horizon = now - WINDOW_S
            while self._entries and self._entries[0][0] <= horizon:
                self._entries.popleft()
            if self.rpm is not None and len(self._entries) >= self.rpm:
                wait = self._entries[len(self._entries) - self.rpm][0] + WINDOW_S - now
                raise self._refuse("rpm", f"{self.rpm} requests per minute reached", wait)
            if self.tpm is not None:
                if tokens > self.tpm:
                    raise self._refuse(
                        "tpm",
                        f"this call may use {tokens} tokens, more than the limit of {self.tpm} per minute "
                        "(lower max_tokens or raise tpm)",
                        None,
                    )
                used = sum(entry[1] for entry in self._entries)
                if used + tokens > self.tpm:
                    wait = self._tokens_free_in(used + tokens - self.tpm, now)
                    raise self._refuse(
                        "tpm",
                        f"{used:.0f} of {self.tpm} tokens per minute used; this call may use {tokens}",
                        wait,
                    )
            entry = [now, float(tokens)]
            self._entries.append(entry)
            return Ticket(self, entry)

    def usage(self) -> tuple[int, int]:
        """Requests and tokens in the current window."""
        with self._lock:
            horizon = self.clock.monotonic() - WINDOW_S
            live = [entry for entry in self._entries if entry[0] > horizon]
            return len(live), int(sum(entry[1] for entry in live))

    def _tokens_free_in(self, excess: float, now: float) -> float:
        freed = 0.0
        for admitted_at, tokens in self._entries:
            freed += tokens
            if freed >= excess:
                return max(0.0, admitted_at + WINDOW_S - now)
        return WINDOW_S

    def _refuse(self, limit: str, detail: str, wait: float | None) -> LimitExceededError:
        after = f"; retry in {wait:.1f}s" if wait is not None else ""
        return LimitExceededError(
            f"{limit} limit: {detail}{after} (aiapp's own limit: no request was sent)",
            limit=limit,
            retry_after=None if wait is None else max(0.0, wait),
            route=self.route,
            deployment=self.deployment,
        )
