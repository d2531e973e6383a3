"""Registers budgets and route rpm/tpm limits as gateway middleware (order 10, around the router)."""

from __future__ import annotations

from aiapp.gateway._layers import LayerContext, register_layer
from aiapp.gateway._model import Model
from aiapp.gateway._shared import per_gateway
from aiapp.gateway.budgets._ledger import open_ledger
from aiapp.gateway.budgets._model import BudgetModel


@register_layer("budgets", order=10)
def budget_layer(context: LayerContext, model: Model) -> Model:
    """Wrap every route: a call may bring a key budget in its metadata even where none is configured.

    A call with nothing to enforce (no route budget or limits, no key budget) passes straight
    through; the ledger (SQLite, or Redis when ``redis_url`` is set) opens on first use.
    """
    config = context.config
    settings = context.settings
    budget = config.budget if config is not None else None
    limits = config.limits if config is not None else None
    gateway = context.gateway
    ledger = per_gateway(gateway, "budgets.ledger", lambda: open_ledger(settings, clock=gateway.clock))
    prices = (
        [(d.label, gateway.prices.price(d.model)) for d in config.deployments]
        if config is not None
        else [(model.name, gateway.prices.price(model.name))]
    )
    return BudgetModel(
        model,
        route=context.route,
        ledger=ledger,
        prices=prices,
        budget=budget,
        key_budgets=settings.budgets.keys,
        limits=limits,
        clock=gateway.clock,
        default_output_tokens=settings.budgets.default_output_tokens,
    )
