"""A gateway process for the shared-budget tests: run with ``python budget_worker.py MODE URL ...``.

``burst URL N START``: wait until epoch ``START``, send ``N`` concurrent calls on key ``team`` (budget
``$BUDGET``), print one JSON line ``{"ok": .., "refused": .., "costs": [..]}``.
``loop URL``: send calls 4 at a time forever on a large budget, printing ``settled <cost>`` after each.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence

from aiapp.config import Price, Settings
from aiapp.errors import BudgetExceededError
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel
from aiapp.types import CallOptions, Completion, Message, Usage

#: $0.001 per output token, input free: a call with max_tokens=10 reserves $0.01.
PRICE = Price(input_per_mtok=0.0, output_per_mtok=1000.0)
ESTIMATE_USD = 0.01
BUDGET_USD = 0.25
HOLD_TTL_S = 2.0


class SlowFake(FakeModel):
    """Takes ``delay`` seconds, like a real upstream, and costs between half and all of the estimate."""

    def __init__(self, delay: float) -> None:
        super().__init__(default="ok")
        self.delay = delay

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        await asyncio.sleep(self.delay * random.uniform(0.5, 1.5))
        cost = round(ESTIMATE_USD * random.uniform(0.5, 1.0), 6)
        return Completion(text="ok", usage=Usage(input_tokens=1, output_tokens=5, cost_usd=cost))


def gateway(url: str, delay: float) -> Gateway:
    settings = Settings.model_validate(
        {
            "redis_url": url,
            "pricing": {"fake/model": PRICE.model_dump()},
            "budgets": {"hold_ttl_s": HOLD_TTL_S},
            "tracing": {"enabled": False},
        }
    )
    return Gateway(settings, models={"r": SlowFake(delay)})


async def burst(url: str, n: int, start: float) -> None:
    gw = gateway(url, 0.02)
    meta = {"budget_key": "team", "budget_usd": BUDGET_USD}
    while time.time() < start:
        await asyncio.sleep(0.001)

    async def one() -> float | None:
        try:
            reply = await gw.acomplete("hi", model="r", max_tokens=10, metadata=meta)
        except BudgetExceededError:
            return None
        return reply.usage.cost_usd

    results = await asyncio.gather(*(one() for _ in range(n)))
    costs = [c for c in results if c is not None]
    print(json.dumps({"ok": len(costs), "refused": n - len(costs), "costs": costs}), flush=True)


async def loop(url: str) -> None:
    gw = gateway(url, 0.05)
    meta = {"budget_key": "killed", "budget_usd": 1000.0}

    async def worker() -> None:
        while True:
            reply = await gw.acomplete("hi", model="r", max_tokens=10, metadata=meta)
            print(f"settled {reply.usage.cost_usd!r}", flush=True)

    await asyncio.gather(*(worker() for _ in range(4)))


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "burst":
        asyncio.run(burst(url, int(sys.argv[3]), float(sys.argv[4])))
    else:
        asyncio.run(loop(url))
