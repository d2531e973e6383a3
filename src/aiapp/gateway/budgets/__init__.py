"""Budgets and rate limits for the gateway: refuse before spending, never after.

Configured per route and per key in ``configs/aiapp.yaml``::

    routes:
      openai:
        budget: {limit_usd: 5.00, window: daily}   # daily | monthly | total (UTC)
        limits: {rpm: 60, tpm: 100000}
        deployments: [...]
    budgets:
      keys:
        "*": {limit_usd: 0.50, window: daily}       # every key: metadata={"budget_key": "alice"}

A call may bring its own key budget: ``metadata={"budget_key": "team-a", "budget_usd": 5.0}``.
Spending persists in ``$AIAPP_HOME/budgets.db`` (a restart does not reset it), or in Redis when
``redis_url:`` is set, so several processes enforce one budget. Importing this package registers
the layer.
"""

from __future__ import annotations

from aiapp.gateway.budgets._layer import budget_layer
from aiapp.gateway.budgets._ledger import BudgetLedger, Claim, Ledger, Reservation, open_ledger, period_of
from aiapp.gateway.budgets._model import BudgetModel
from aiapp.gateway.budgets._redis_ledger import RedisBudgetLedger

__all__ = [
    "BudgetLedger",
    "BudgetModel",
    "Claim",
    "Ledger",
    "RedisBudgetLedger",
    "Reservation",
    "budget_layer",
    "open_ledger",
    "period_of",
]
