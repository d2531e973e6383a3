"""Token prices: litellm's model price map read locally from disk, overridden by configuration.

We read litellm's bundled JSON file without importing litellm (importing it costs ~1.5 s and, unless
told otherwise, fetches the map over the network). Without litellm installed, only configured
prices and the free local models are known; anything else has an *unknown* cost (``None``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiapp.types import Usage

_LITELLM_MAP = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class TokenPrice:
    """USD per token, input and output."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The cost of a call with these token counts."""
        return input_tokens * self.input + output_tokens * self.output


class PriceTable:
    """Looks up a model's price: config overrides first, then litellm's map, then ``None``."""

    def __init__(self, overrides: Mapping[str, tuple[float, float]] | None = None) -> None:
        """``overrides`` maps a model name to (input, output) USD per million tokens."""
        self._overrides = {
            name: TokenPrice(inp / 1e6, out / 1e6) for name, (inp, out) in (overrides or {}).items()
        }

    def price(self, model: str) -> TokenPrice | None:
        """The price for ``provider/model`` (or a bare model name), or ``None`` when unknown."""
        for key in _candidates(model):
            if key in self._overrides:
                return self._overrides[key]
        if model.startswith("local/"):
            return TokenPrice(0.0, 0.0)
        table = _litellm_prices()
        for key in _candidates(model):
            entry = table.get(key)
            if entry is not None:
                return entry
        return None

    def usage(self, model: str, input_tokens: int, output_tokens: int) -> Usage:
        """A :class:`Usage` with the cost filled in when the price is known."""
        price = self.price(model)
        cost = price.cost(input_tokens, output_tokens) if price is not None else None
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost)


def _candidates(model: str) -> list[str]:
    out = [model]
    if "/" in model:
        prefix, rest = model.split("/", 1)
        out.append(rest)
        if prefix in ("vllm", "hosted_vllm"):
            out.append(f"hosted_vllm/{rest}")
    return out


def litellm_price_file() -> Path | None:
    """Where litellm's bundled price map lies, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _LITELLM_MAP
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=1)
def _litellm_prices() -> dict[str, TokenPrice]:
    path = litellm_price_file()
    if path is None:
        return {}
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, TokenPrice] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            continue
        inp, outp = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if isinstance(inp, int | float) and isinstance(outp, int | float):
            out[name] = TokenPrice(float(inp), float(outp))
    return out
