"""Shadow traffic: a second candidate run on the primary's input, after the primary answered.

A :class:`ShadowRunner` decides, before the primary call, whether this call gets a shadow
(:meth:`ShadowRunner.reserve`): sampled (sticky by the caller's key when there is one), and
*dropped, never queued* when ``max_in_flight`` shadows already run or the budget is spent. The
reservation is recorded on the primary's trace (``shadow: {pair, status}``); once the primary has
answered, :meth:`Reservation.launch` starts the shadow as a background task on the running loop.
The primary never waits for it, never sees its reply, and never sees its errors: a failing shadow
is counted in :attr:`ShadowRunner.failed` and traced on its own span (``shadow_of: {pair}``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiapp._rollout_config import ShadowSpec, bucket
from aiapp.tracing import new_id
from aiapp.types import Completion

__all__ = ["Reservation", "ShadowRunner", "in_shadow"]

log = logging.getLogger("aiapp.rollout")

_shadowing: contextvars.ContextVar[bool] = contextvars.ContextVar("aiapp_shadowing", default=False)


def in_shadow() -> bool:
    """Whether the code running is a shadow call (shadows are never shadowed again)."""
    return _shadowing.get()


@dataclass
class Reservation:
    """A shadow slot held for one primary call: launch it after the primary answers, or release it.

    Attributes:
        pair: The id linking the primary's trace (``shadow.pair``) and the shadow's (``shadow_of.pair``).
    """

    runner: ShadowRunner
    pair: str = field(default_factory=new_id)
    done: bool = False

    def attributes(self) -> dict[str, object]:
        """The primary's trace attribute: ``{"shadow": {"pair", "status", "target"}}``."""
        return {"shadow": {"pair": self.pair, "status": "started", "target": self.runner.target}}

    def launch(self, run: Callable[[str], Awaitable[Completion]]) -> asyncio.Task[None] | None:
        """Start the shadow: ``run(pair)`` makes the (traced) shadow call. Never raises."""
        if self.done:
            return None
        self.done = True
        try:
            loop = asyncio.get_running_loop()
            context = contextvars.copy_context()
            context.run(_shadowing.set, True)
            coroutine = self.runner._run(run, self.pair)
            try:
                task = loop.create_task(coroutine, context=context)
            except BaseException:
                coroutine.close()
                raise
        except Exception as exc:  # no loop, loop closing: the primary is unaffected
            self.runner._finished()
            self.runner.failed += 1
            log.debug("shadow %s could not start: %s", self.runner.target, exc)
            return None
        self.runner._tasks.add(task)
        task.add_done_callback(self.runner._tasks.discard)
        return task

    def release(self) -> None:
        """Give the slot back without running the shadow (the primary failed)."""
        if not self.done:
            self.done = True
            self.runner._finished()


class ShadowRunner:
    """Admits, runs and accounts the shadows of one route or label entry.

    Args:
        spec: Sample, concurrency and budget limits.
        target: How traces name the shadow (``route:openai``, ``support_answer@v3``).
        rng: Randomness for sampling calls that carry no key.

    Attributes:
        in_flight: Shadows reserved or running.
        spent_usd: What finished shadows cost (calls with an unknown price count 0).
        started: Shadows launched.
        failed: Shadows that raised (never seen by the primary).
        dropped: Calls not shadowed, by reason (``sample``, ``max_in_flight``, ``budget``).
    """

    def __init__(self, spec: ShadowSpec, *, target: str, rng: random.Random | None = None) -> None:
        self.spec = spec
        self.target = target
        self.rng = rng or random.Random()
        self.in_flight = 0
        self.spent_usd = 0.0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.dropped: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()  # sync callers on several threads each have their own loop

    def reserve(self, key: str | None = None) -> Reservation | None:
        """A slot for this call's shadow, or ``None`` (sampled out, over ``max_in_flight`` or budget)."""
        spec = self.spec
        if spec.sample < 1.0:
            point = bucket(key, f"shadow/{self.target}") if key is not None else self.rng.random()
            if point >= spec.sample:
                self.dropped["sample"] += 1
                return None
        with self._lock:
            if self.in_flight >= spec.max_in_flight:
                self.dropped["max_in_flight"] += 1
                return None
            if spec.budget_usd is not None and self.spent_usd >= spec.budget_usd:
                self.dropped["budget"] += 1
                return None
            self.in_flight += 1
        return Reservation(self)

    def stats(self) -> dict[str, object]:
        """Counters for reports and tests."""
        return {
            "target": self.target,
            "in_flight": self.in_flight,
            "started": self.started,
            "completed": self.completed,
            "failed": self.failed,
            "dropped": dict(self.dropped),
            "spent_usd": self.spent_usd,
        }

    async def drain(self) -> None:
        """Wait for every running shadow (tests, shutdown); their errors stay swallowed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        """Cancel running shadows (the gateway is closing)."""
        for task in list(self._tasks):
            task.cancel()

    async def _run(self, run: Callable[[str], Awaitable[Completion]], pair: str) -> None:
        self.started += 1
        try:
            completion = await run(pair)
        except asyncio.CancelledError:
            self.failed += 1
            raise
        except Exception as exc:
            self.failed += 1
            log.debug("shadow %s failed: %s: %s", self.target, type(exc).__name__, exc)
        else:
            with self._lock:
                self.completed += 1
                self.spent_usd += completion.usage.cost_usd or 0.0
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)
