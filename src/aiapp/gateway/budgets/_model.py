"""The budget layer: refuse a call before it is sent when it could take a budget or rate over its limit.

Registered as gateway middleware at order 10 — inside the cache (a cache hit spends nothing), around
the router. For each call it:

1. takes a ticket from the route's rpm/tpm limiter (``routes.<name>.limits``), if any;
2. estimates the call's worst-case cost — estimated input tokens plus ``max_tokens`` (or
   ``budgets.default_output_tokens``), at the price of the route's *most expensive* deployment,
   since failover may land there — and reserves it on the route's budget
   (``routes.<name>.budget``) and the caller's key budget (``metadata={"budget_key": ...}``,
   ``budgets.keys``); if either would go over, :class:`~aiapp.errors.BudgetExceededError`;
3. calls the route, then settles the reservation with the real cost (the estimate when the
   provider reported no price) or releases it when the call failed before any reply.

A budget needs prices: a route with a budget whose deployments have no known price is a
configuration error (add them under ``pricing:``), never a silent bypass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiapp.config import Budget, Limits
from aiapp.errors import ConfigError
from aiapp.gateway._clock import Clock
from aiapp.gateway._context import current_call
from aiapp.gateway._estimate import TokenEstimate, estimate_tokens
from aiapp.gateway._model import Model
from aiapp.gateway._pricing import TokenPrice
from aiapp.gateway._ratelimit import RateLimiter, Ticket
from aiapp.gateway.budgets._ledger import BudgetLedger, Claim, Reservation
from aiapp.tracing import annotate
from aiapp.types import CallOptions, Completion, Message, StreamChunk

_R = TypeVar("_R")


@dataclass
class _Admitted:
    estimate: TokenEstimate
    cost: float
    ticket: Ticket | None
    reservation: Reservation | None


class BudgetModel(Model):
    """Wraps a route's model with budgets and rpm/tpm limits.

    Args:
        inner: The route's model.
        route: The route's name.
        ledger: Where spending is kept.
        prices: ``(deployment, price or None)`` for every deployment the route may use.
        budget: The route's own budget.
        key_budgets: Budgets per ``budget_key`` (``"*"`` for any other key).
        limits: The route's rpm/tpm limits.
        clock: Time for the limiter.
        default_output_tokens: Output tokens reserved when a call sets no ``max_tokens``.
    """

    def __init__(
        self,
        inner: Model,
        *,
        route: str,
        ledger: BudgetLedger,
        prices: Sequence[tuple[str, TokenPrice | None]],
        budget: Budget | None = None,
        key_budgets: Mapping[str, Budget] | None = None,
        limits: Limits | None = None,
        clock: Clock,
        default_output_tokens: int = 1024,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.info = inner.info
        self.route = route
        self.ledger = ledger
        self.prices = list(prices)
        self.budget = budget
        self.key_budgets = dict(key_budgets or {})
        self.limiter = (
            RateLimiter(limits, clock, route=route) if limits and (limits.rpm or limits.tpm) else None
        )
        self.default_output_tokens = default_output_tokens
        if budget is not None:
            self._check_prices(f"route {route!r} has a budget")

    def _check_prices(self, why: str) -> None:
        unknown = [label for label, price in self.prices if price is None]
        if unknown:
            raise ConfigError(
                f"{why}, but no price is known for {', '.join(map(repr, unknown))}; add it under "
                "pricing: (USD per million tokens) so calls can be costed before they are sent",
                field="pricing",
            )

    def _claims(self) -> list[Claim]:
        claims = [Claim("route", self.route, self.budget)] if self.budget is not None else []
        context = current_call()
        key = context.metadata.get("budget_key") if context is not None else None
        if key is not None and self.key_budgets:
            budget = self.key_budgets.get(str(key)) or self.key_budgets.get("*")
            if budget is not None:
                self._check_prices(f"key {str(key)!r} has a budget")
                claims.append(Claim("key", str(key), budget))
        return claims

    def _admit(self, messages: Sequence[Message], options: CallOptions | None) -> _Admitted:
        estimate = estimate_tokens(messages, options, default_output_tokens=self.default_output_tokens)
        claims = self._claims()
        cost = max((estimate.cost(p) for _, p in self.prices if p is not None), default=0.0)
        ticket = self.limiter.acquire(estimate.total) if self.limiter is not None else None
        reservation = None
        if claims:
            try:
                reservation = self.ledger.reserve(claims, cost)
            except BaseException:
                if ticket is not None:
                    ticket.cancel()
                raise
            annotate(budget_reserved_usd=round(cost, 8), budget_scopes=[c.id for c in claims])
        return _Admitted(estimate, cost, ticket, reservation)

    def _done(self, admitted: _Admitted, completion: Completion | None, *, spent: bool) -> None:
        """Settle after a reply (``completion``), or after a failure (``spent``: output had begun)."""
        if admitted.ticket is not None:
            tokens = completion.usage.total_tokens if completion is not None else None
            admitted.ticket.settle(tokens or (None if spent else 0))
        if admitted.reservation is None:
            return
        if completion is not None:
            cost = completion.usage.cost_usd
            self.ledger.settle(admitted.reservation, admitted.cost if cost is None else cost)
        elif spent:
            self.ledger.settle(admitted.reservation, admitted.cost)
        else:
            self.ledger.release(admitted.reservation)

    # -- the Model interface ----------------------------------------------------------------------

    async def _off_loop(self, fn: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
        """Ledger work is SQLite I/O that may wait on a lock: run it off the event loop."""
        if self.budget is None and not self.key_budgets:
            return fn(*args, **kwargs)  # limiter only: in memory, microseconds
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Reserve, call, settle."""
        admitted = await self._off_loop(self._admit, messages, options)
        try:
            completion = await self.inner.acomplete(messages, options)
        except BaseException:
            await self._off_loop(self._done, admitted, None, spent=False)
            raise
        await self._off_loop(self._done, admitted, completion, spent=True)
        return completion

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Reserve, stream, settle with the usage on the last chunk (the estimate if cut short)."""
        admitted = await self._off_loop(self._admit, messages, options)
        started = False
        last: StreamChunk | None = None
        try:
            async for chunk in self.inner.astream(messages, options):
                started = True
                last = chunk
                yield chunk
        except BaseException:
            # Settled inline: an abandoned stream is closed with GeneratorExit, where awaiting
            # a thread is not allowed.
            self._done(admitted, None, spent=started)
            raise
        await self._off_loop(self._done, admitted, _final(last), spent=started)

    def close(self) -> None:
        """Close the inner model and the ledger (which reopens on next use)."""
        self.inner.close()
        self.ledger.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self.inner.aclose()
        self.ledger.close()


def _final(last: StreamChunk | None) -> Completion | None:
    if last is None or last.usage is None:
        return None
    return Completion(usage=last.usage)
