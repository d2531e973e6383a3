"""The budget layer: refuse a call before it is sent when it could take a budget or rate over its limit.

Registered as gateway middleware at order 10 — inside the cache (a cache hit spends nothing), around
the router. For each call it:

1. takes a ticket from the route's rpm/tpm limiter (``routes.<name>.limits``), if any;
2. estimates the call's worst-case cost — estimated input tokens plus ``max_tokens`` (or
   ``budgets.default_output_tokens``), at the price of the route's *most expensive* deployment,
   since failover may land there — and reserves it on the route's budget
   (``routes.<name>.budget``) and the caller's key budget — ``metadata={"budget_key": ...}`` with
   its own ``budget_usd`` (and ``budget_window``, default ``total``; ``aiapp serve`` sends these for
   each virtual key) or one from ``budgets.keys``; if either would go over,
   :class:`~aiapp.errors.BudgetExceededError`;
3. calls the route, then settles the reservation with the real cost (the estimate when the
   provider reported no price) or releases it when the call failed before any reply.

A budget needs prices: a route with a budget whose deployments have no known price is a
configuration error (add them under ``pricing:``), never a silent bypass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from aiapp.config import Budget, Limits
from aiapp.errors import ConfigError
from aiapp.gateway._clock import Clock
from aiapp.gateway._context import current_call
from aiapp.gateway._estimate import TokenEstimate, estimate_tokens
from aiapp.gateway._model import Model
from aiapp.gateway._pricing import TokenPrice
from aiapp.gateway._ratelimit import RateLimiter, Ticket
from aiapp.gateway.budgets._ledger import Claim, Ledger, Reservation
from aiapp.tracing import annotate
from aiapp.types import CallOptions, Completion, Message, StreamChunk


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
        ledger: Ledger,
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

    def __getattr__(self, name: str) -> Any:
        """Every route is wrapped (a call may bring a key budget), so the route's own attributes
        (``health``, ``deployments``) stay reachable through it."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

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
        if context is None:
            return claims
        metadata = context.metadata
        key = metadata.get("budget_key")
        if key is None:
            if metadata.get("budget_usd") is not None:
                raise ConfigError("metadata budget_usd needs a budget_key to charge", field="metadata")
            return claims
        budget = _call_budget(metadata) if metadata.get("budget_usd") is not None else None
        if budget is None and self.key_budgets:
            budget = self.key_budgets.get(str(key)) or self.key_budgets.get("*")
        if budget is not None:
            self._check_prices(f"key {str(key)!r} has a budget")
            claims.append(Claim("key", str(key), budget))
        return claims

    def _admit(
        self, messages: Sequence[Message], options: CallOptions | None, claims: list[Claim]
    ) -> _Admitted:
        estimate = estimate_tokens(messages, options, default_output_tokens=self.default_output_tokens)
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

    async def _admit_async(
        self, messages: Sequence[Message], options: CallOptions | None, claims: list[Claim]
    ) -> _Admitted:
        """Ledger work is SQLite or Redis I/O that may wait: it runs off the event loop."""
        if not claims:
            return self._admit(messages, options, claims)  # limiter only: in memory, microseconds
        return await asyncio.to_thread(self._admit, messages, options, claims)

    async def _done_async(self, admitted: _Admitted, completion: Completion | None, *, spent: bool) -> None:
        if admitted.reservation is None:
            self._done(admitted, completion, spent=spent)
        else:
            await asyncio.to_thread(self._done, admitted, completion, spent=spent)

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Reserve, call, settle."""
        claims = self._claims()
        if not claims and self.limiter is None:
            return await self.inner.acomplete(messages, options)  # nothing to enforce on this call
        admitted = await self._admit_async(messages, options, claims)
        try:
            completion = await self.inner.acomplete(messages, options)
        except BaseException:
            await self._done_async(admitted, None, spent=False)
            raise
        await self._done_async(admitted, completion, spent=True)
        return completion

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Reserve, stream, settle with the usage on the last chunk (the estimate if cut short)."""
        claims = self._claims()
        if not claims and self.limiter is None:
            async for chunk in self.inner.astream(messages, options):
                yield chunk
            return
        admitted = await self._admit_async(messages, options, claims)
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
        await self._done_async(admitted, _final(last), spent=started)

    def close(self) -> None:
        """Close the inner model and the ledger (which reopens on next use)."""
        self.inner.close()
        self.ledger.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self.inner.aclose()
        self.ledger.close()


def _call_budget(metadata: Mapping[str, Any]) -> Budget:
    """The key budget a call brings in its metadata (``budget_usd``, ``budget_window``)."""
    try:
        return Budget(limit_usd=metadata["budget_usd"], window=metadata.get("budget_window", "total"))
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"])
        raise ConfigError(
            f"metadata budget_{'usd' if field == 'limit_usd' else 'window'}: {problem['msg']}",
            field="metadata",
        ) from exc


def _final(last: StreamChunk | None) -> Completion | None:
    if last is None or last.usage is None:
        return None
    return Completion(usage=last.usage)
