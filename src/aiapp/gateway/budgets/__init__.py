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

Spending persists in ``$AIAPP_HOME/budgets.db`` (a restart does not reset it). Importing this
package registers the layer.
"""

from __future__ import annotations

from aiapp.gateway.budgets._layer import budget_layer
from aiapp.gateway.budgets._ledger import BudgetLedger, Claim, Reservation, period_of
from aiapp.gateway.budgets._model import BudgetModel

__all__ = ["BudgetLedger", "BudgetModel", "Claim", "Reservation", "budget_layer", "period_of"]
