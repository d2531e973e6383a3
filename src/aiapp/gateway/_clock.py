"""Time, injectable: the router's backoff and breakers, rate limits and budget windows read a clock.

Production code uses :class:`SystemClock`. Tests pass a :class:`ManualClock` (to ``Gateway(clock=...)``
or a :class:`~aiapp.gateway.RouteModel`) so that cooldowns and ``Retry-After`` waits happen
instantly and can be asserted on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What the gateway needs from time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for budget windows)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Wait ``seconds`` without blocking the event loop."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def time(self) -> float:
        """``time.time()``."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """``time.sleep``."""
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        if seconds > 0:
            await asyncio.sleep(seconds)


class ManualClock:
    """A clock for tests: time moves only when told to, and sleeping just moves it.

    Args:
        start: The initial wall-clock time (epoch seconds); monotonic time starts at 0.

    Attributes:
        sleeps: Every wait requested through :meth:`sleep` or :meth:`asleep`, in order.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._start = start
        self._now = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Seconds since the clock was made (as advanced)."""
        return self._now

    def time(self) -> float:
        """``start`` plus the time advanced."""
        return self._start + self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the wait and move time forward by it."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    async def asleep(self, seconds: float) -> None:
        """Like :meth:`sleep`, yielding to the event loop once."""
        self.sleep(seconds)
        await asyncio.sleep(0)
