"""The router: a route's deployments behind one :class:`Model`, with failover, retries, circuit
breakers, Retry-After, timeouts and four ordering strategies.

How one call proceeds:

1. **Order** the deployments by the route's ``strategy``: ``fallback`` (as listed), ``weighted``
   (random, by ``weight``; *sticky* when the call's metadata carries a caller key — ``user``,
   ``session_id`` or ``rollout_key`` — : a hash of the key picks the first deployment, so the same
   key always lands on the same one, recorded on the trace as ``route_arm``), ``latency`` (lowest smoothed latency first; unmeasured ones first so
   each gets measured) or ``cost`` (cheapest for this request first; unknown prices last).
2. **A pass** tries each deployment once, failing over at once. A deployment is skipped, without a
   request, while its circuit breaker is open, while a ``Retry-After`` it sent holds it, or while
   its rpm/tpm limit is full. An error about the deployment itself (a rejected or missing key,
   a model it does not serve: ``deployment_fault``) opens that deployment's breaker and fails
   over; an error about the request (400, 422) ends the call, since every deployment would
   refuse it.
3. **Retries**: after a failed pass the route waits — exponential backoff with jitter, or longer
   if a deployment's ``Retry-After`` asks for it (up to ``max_wait_s``) — and makes another pass,
   ``retries.attempts`` times. It never waits on an open breaker: that is what breakers are for.
4. **Timeouts**: ``timeout_s`` on the route bounds the whole call; each attempt gets what is left.

Streams fail over and retry only before their first chunk: once text has reached the caller,
switching models would splice two different replies. A stream that breaks later counts against
its deployment's breaker and raises.

Breakers, holds, latencies and deployment limits live in a :class:`~aiapp.gateway._health.HealthBoard`
shared by all routes of a gateway.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiapp._rollout_config import bucket, key_hash, sticky_key
from aiapp.config import BreakerPolicy, Limits, RetryPolicy, Route, Strategy
from aiapp.errors import (
    AllDeploymentsFailedError,
    CircuitOpenError,
    Failure,
    LimitExceededError,
    ProviderError,
    ProviderTimeoutError,
)
from aiapp.gateway._clock import Clock, SystemClock
from aiapp.gateway._context import current_call
from aiapp.gateway._errors import map_exception
from aiapp.gateway._estimate import DEFAULT_OUTPUT_TOKENS, TokenEstimate, estimate_tokens
from aiapp.gateway._health import DeploymentHealth, HealthBoard
from aiapp.gateway._model import Model
from aiapp.gateway._pricing import PriceTable, TokenPrice
from aiapp.gateway._ratelimit import Ticket
from aiapp.tracing import annotate
from aiapp.types import CallOptions, Completion, Message, StreamChunk

if TYPE_CHECKING:
    from aiapp.gateway._gateway import Gateway

NO_RETRIES = RetryPolicy(attempts=0)
_EXPLORE = 0.05  # share of calls on which the latency strategy re-measures a slower deployment


@dataclass(frozen=True)
class RouteDeployment:
    """One deployment of a route.

    Attributes:
        label: How errors, traces and breakers name it.
        model: The model serving it.
        weight: Its share of traffic under the ``weighted`` strategy.
        limits: Its rpm/tpm limits (shared by every route that uses the label).
        timeout_s: Per-attempt timeout. Providers enforce their own; async calls are also cut
            with ``asyncio.wait_for`` so a model that ignores it cannot stall failover.
    """

    label: str
    model: Model
    weight: float = 1.0
    limits: Limits | None = None
    timeout_s: float | None = None


@dataclass
class _Slot:
    label: str
    model: Model
    weight: float
    health: DeploymentHealth
    price: TokenPrice | None
    timeout_s: float | None


@dataclass
class _Try:
    slot: _Slot
    probe: bool
    ticket: Ticket | None
    options: CallOptions | None
    timeout: float | None
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class _Wait:
    seconds: float


class RouteModel(Model):
    """A route: deployments tried by strategy, with retries, breakers and timeouts.

    With only ``name`` and ``deployments`` it is plain ordered failover (no retries) with the default
    breaker; :func:`build_route` applies a route's configuration.

    Args:
        name: The route's name (used in errors and traces).
        deployments: ``(label, model)`` pairs or :class:`RouteDeployment` values.
        strategy: ``fallback``, ``weighted``, ``latency`` or ``cost``.
        retries: Retry policy; ``None`` means no retries.
        breaker: Breaker policy; ``None`` means the default (3 failures, 30 s cooldown).
        timeout_s: Deadline for the whole call, retries included.
        health: Shared deployment state; a private board by default.
        prices: Token prices, for the ``cost`` strategy.
        clock: Time source (tests pass a :class:`~aiapp.gateway.ManualClock`).
        rng: Randomness for jitter and the ``weighted`` strategy.
        default_output_tokens: Output tokens assumed when a call sets no ``max_tokens``.
    """

    def __init__(
        self,
        name: str,
        deployments: Sequence[tuple[str, Model] | RouteDeployment],
        *,
        strategy: Strategy = "fallback",
        retries: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        timeout_s: float | None = None,
        health: HealthBoard | None = None,
        prices: PriceTable | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    ) -> None:
        if not deployments:
            raise ValueError(f"route {name!r} has no deployments")
        targets = [d if isinstance(d, RouteDeployment) else RouteDeployment(d[0], d[1]) for d in deployments]
        self.name = name
        self.strategy: Strategy = strategy
        self.retries = retries or NO_RETRIES
        self.breaker = breaker or BreakerPolicy()
        self.timeout_s = timeout_s
        self.clock: Clock = clock or (health.clock if health is not None else SystemClock())
        self.health = health or HealthBoard(self.clock)
        self.rng = rng or random.Random()
        self.default_output_tokens = default_output_tokens
        self.deployments = [(t.label, t.model) for t in targets]
        self._slots = [
            _Slot(
                t.label,
                t.model,
                t.weight,
                self.health.get(t.label, limits=t.limits),
                prices.price(t.model.name) if prices is not None else None,
                t.timeout_s,
            )
            for t in targets
        ]
        self.info = targets[0].model.info

    # -- the calls -------------------------------------------------------------------------------

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Answer from the first deployment that succeeds (see the module docstring).

        The route's deadline is enforced with ``asyncio.wait_for``.
        """
        plan = _Plan(self, messages, options)
        while True:
            step = plan.next()
            if isinstance(step, _Wait):
                await self.clock.asleep(step.seconds)
                continue
            if isinstance(step, ProviderError):
                raise step
            try:
                call = step.slot.model.acomplete(messages, step.options)
                completion = await (asyncio.wait_for(call, step.timeout) if step.timeout else call)
            except Exception as exc:
                plan.failed(step, exc)
                continue
            return plan.succeeded(step, completion)

    async def astream(
        self,
        messages: Sequence[Message],
        options: CallOptions | None = None,
        *,
        tried: list[str] | None = None,
    ) -> AsyncIterator[StreamChunk]:
        """Stream from the first deployment that produces a first chunk; ``tried`` collects the labels."""
        plan = _Plan(self, messages, options)
        tried = [] if tried is None else tried
        annotate(tried=tried)
        while True:
            step = plan.next()
            if isinstance(step, _Wait):
                await self.clock.asleep(step.seconds)
                continue
            if isinstance(step, ProviderError):
                raise step
            tried.append(step.slot.label)
            try:
                iterator = step.slot.model.astream(messages, step.options).__aiter__()
                pending = iterator.__anext__()
                first = await (asyncio.wait_for(pending, step.timeout) if step.timeout else pending)
            except StopAsyncIteration:
                plan.stream_started(step)
                plan.stream_ended(step, None)
                return
            except Exception as exc:
                plan.failed(step, exc)
                continue
            plan.stream_started(step)
            last = first
            yield first
            try:
                async for chunk in iterator:
                    last = chunk
                    yield chunk
            except Exception as exc:
                raise plan.broke(step, exc) from exc
            plan.stream_ended(step, last)
            return

    def close(self) -> None:
        """Close every deployment's model."""
        for _, model in self.deployments:
            model.close()

    async def aclose(self) -> None:
        """Close every deployment's model on the running loop."""
        for _, model in self.deployments:
            await model.aclose()

    # -- ordering --------------------------------------------------------------------------------

    def _order(self, estimate: TokenEstimate | None) -> list[_Slot]:
        slots = list(self._slots)
        if self.strategy == "weighted":
            call = current_call()
            key = sticky_key(call.metadata) if call is not None else None
            if key is not None:
                return self._sticky(slots, key)
            # Efraimidis–Spirakis: a weighted random order without replacement.
            keys = {id(s): self.rng.random() ** (1.0 / s.weight) for s in slots}
            slots.sort(key=lambda s: keys[id(s)], reverse=True)
        elif self.strategy == "latency":
            slots.sort(key=lambda s: -1.0 if s.health.latency_ms is None else s.health.latency_ms)
            if len(slots) > 1 and self.rng.random() < _EXPLORE:
                slots.insert(0, slots.pop(self.rng.randrange(1, len(slots))))
        elif self.strategy == "cost" and estimate is not None:
            slots.sort(key=lambda s: float("inf") if s.price is None else estimate.cost(s.price))
        return slots

    def _sticky(self, slots: list[_Slot], key: str) -> list[_Slot]:
        """The caller's deployment first (consecutive slices of [0, 1) by weight, in listed order),
        then the others by weight for failover."""
        point = bucket(key, f"route/{self.name}")
        total = sum(s.weight for s in slots)
        cumulative, chosen = 0.0, slots[-1]
        for slot in slots:
            cumulative += slot.weight / total
            if point < cumulative:
                chosen = slot
                break
        annotate(route_arm={"experiment": f"route/{self.name}", "arm": chosen.label, "key": key_hash(key)})
        rest = sorted((s for s in slots if s is not chosen), key=lambda s: -s.weight)
        return [chosen, *rest]


class _Plan:
    """The decisions of one call: which deployment next, how long to wait, when to give up."""

    def __init__(self, route: RouteModel, messages: Sequence[Message], options: CallOptions | None) -> None:
        self.route = route
        self.messages = messages
        self.options = options
        self.failures: list[Failure] = []
        self.skipped: dict[str, ProviderError] = {}
        self.waited: list[float] = []
        self.passes_left = route.retries.attempts
        self.passes = 0
        self.stop = False
        self.timed_out = False
        now = route.clock.monotonic()
        self.deadline = now + route.timeout_s if route.timeout_s else None
        self._estimate: TokenEstimate | None = None
        self.queue = deque(route._order(self.estimate() if route.strategy == "cost" else None))

    def estimate(self) -> TokenEstimate:
        if self._estimate is None:
            self._estimate = estimate_tokens(
                self.messages, self.options, default_output_tokens=self.route.default_output_tokens
            )
        return self._estimate

    def next(self) -> _Try | _Wait | ProviderError:
        route = self.route
        while True:
            if self.stop:
                return self.give_up()
            remaining = None if self.deadline is None else self.deadline - route.clock.monotonic()
            if remaining is not None and remaining <= 0:
                self.timed_out = True
                return self.give_up()
            if self.queue:
                slot = self.queue.popleft()
                admission = slot.health.admit(route.breaker)
                if not admission.ok:
                    self.skipped[slot.label] = admission.error(route.name, slot.label)
                    continue
                ticket = None
                if slot.health.limiter is not None:
                    try:
                        ticket = slot.health.limiter.acquire(self.estimate().total)
                    except LimitExceededError as exc:
                        slot.health.release(probe=admission.probe)
                        self.skipped[slot.label] = exc.at(route=route.name)
                        continue
                timeout = slot.timeout_s if remaining is None else min(remaining, slot.timeout_s or remaining)
                return _Try(slot, admission.probe, ticket, self._options(remaining), timeout)
            if self.passes_left <= 0:
                return self.give_up()
            hints = [h for s in route._slots if (h := s.health.wait_hint(route.breaker)) is not None]
            if not hints:
                return self.give_up()
            wait = max(self._backoff(), min(hints))
            if wait > route.retries.max_wait_s or (remaining is not None and wait >= remaining):
                return self.give_up()
            self.passes_left -= 1
            self.passes += 1
            self.queue = deque(route._order(self.estimate() if route.strategy == "cost" else None))
            if wait > 0:
                self.waited.append(round(wait, 3))
                return _Wait(wait)

    def _backoff(self) -> float:
        policy = self.route.retries
        delay = min(policy.max_backoff_s, policy.backoff_s * (2.0**self.passes))
        if policy.jitter:
            delay *= 0.5 + 0.5 * self.route.rng.random()
        return delay

    def _options(self, remaining: float | None) -> CallOptions | None:
        if remaining is None:
            return self.options
        limit = remaining
        if self.options is not None and self.options.timeout_s is not None:
            limit = min(limit, self.options.timeout_s)
        bounded = CallOptions(timeout_s=max(limit, 0.001))
        return bounded if self.options is None else self.options.merged(bounded)

    # -- outcomes ---------------------------------------------------------------------------------

    def failed(self, step: _Try, exc: BaseException) -> ProviderError:
        route = self.route
        error = map_exception(exc, route=route.name, deployment=step.slot.label)
        self.failures.append(Failure(step.slot.label, error))
        if error.retryable and not isinstance(error, LimitExceededError | CircuitOpenError):
            step.slot.health.failure(route.breaker, retry_after=getattr(error, "retry_after", None))
        elif error.deployment_fault:
            step.slot.health.trip()  # misconfigured: skip it until the cooldown, fail over now
        else:
            step.slot.health.release(probe=step.probe)
        if step.ticket is not None:
            step.ticket.settle(0)
        if not error.retryable and not error.deployment_fault:
            self.stop = True  # the request itself is wrong: another deployment would refuse it too
        return error

    def succeeded(self, step: _Try, completion: Completion) -> Completion:
        latency_ms = (time.perf_counter() - step.started) * 1000.0
        step.slot.health.success(latency_ms=latency_ms)
        if step.ticket is not None:
            step.ticket.settle(completion.usage.total_tokens or None)
        self._annotate()
        return completion.model_copy(
            update={
                "route": self.route.name,
                "deployment": step.slot.label,
                "attempts": len(self.failures) + 1,
                "tried": (*(f.deployment for f in self.failures), step.slot.label),
                "latency_ms": latency_ms,
            }
        )

    def stream_started(self, step: _Try) -> None:
        step.slot.health.success()
        self._annotate()

    def stream_ended(self, step: _Try, last: StreamChunk | None) -> None:
        if step.ticket is not None:
            usage = last.usage if last is not None else None
            step.ticket.settle(usage.total_tokens if usage is not None and usage.total_tokens else None)

    def broke(self, step: _Try, exc: BaseException) -> ProviderError:
        error = map_exception(exc, route=self.route.name, deployment=step.slot.label)
        if error.retryable:
            step.slot.health.failure(self.route.breaker, retry_after=getattr(error, "retry_after", None))
        return error

    def give_up(self) -> ProviderError:
        self._annotate()
        attempted = {f.deployment for f in self.failures}
        failures = list(self.failures)
        failures += [Failure(label, e) for label, e in self.skipped.items() if label not in attempted]
        if self.timed_out:
            error = ProviderTimeoutError(
                f"the route's deadline of {self.route.timeout_s}s passed", route=self.route.name
            )
            failures.append(Failure(self.route.name, error))
        if len(failures) == 1:
            return failures[0].error
        if not failures:
            return ProviderError("no deployment could be tried", route=self.route.name, retryable=True)
        return AllDeploymentsFailedError(self.route.name, failures)

    def _annotate(self) -> None:
        if self.skipped:
            annotate(skipped={label: type(e).__name__ for label, e in self.skipped.items()})
        if self.waited:
            annotate(retry_waits_s=list(self.waited))


def build_route(name: str, config: Route, gateway: Gateway) -> RouteModel:
    """The :class:`RouteModel` for a configured route, sharing the gateway's deployment health."""
    from aiapp.gateway._registry import build_model

    return RouteModel(
        name,
        [
            RouteDeployment(
                d.label,
                build_model(d, gateway.prices),
                weight=d.weight,
                limits=d.limits,
                timeout_s=d.timeout_s,
            )
            for d in config.deployments
        ],
        strategy=config.strategy,
        retries=config.retries,
        breaker=config.breaker,
        timeout_s=config.timeout_s,
        health=gateway.health,
        prices=gateway.prices,
        default_output_tokens=gateway.settings.budgets.default_output_tokens,
    )
