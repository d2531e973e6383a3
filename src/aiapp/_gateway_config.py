"""Gateway policy settings: routing strategy, retries, circuit breakers, caches, budgets and limits.

These are the value types behind ``routes.<name>.{strategy,retries,breaker,budget,limits}``,
``cache:`` and ``budgets:`` in ``configs/aiapp.yaml``. They live here to keep :mod:`aiapp.config`
short; import them from :mod:`aiapp.config`.

Also here: which provider prefixes exist (:func:`provider_prefix_problem`). litellm's list is
read from ``aiapp/data/litellm_providers.txt``, generated from ``litellm.provider_list``, so
validating a config never imports litellm (a test keeps the file a superset of the installed one).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strategy = Literal["fallback", "weighted", "latency", "cost"]
"""How a route orders its deployments: as listed, by weight, lowest latency first, cheapest first."""

BudgetWindow = Literal["daily", "monthly", "total"]
"""When spending starts again from zero: each UTC day, each UTC month, or never."""

CacheMode = Literal["on", "off", "record", "replay"]
"""``on``: read and write; ``record``: always call and store; ``replay``: only read (a miss is an error)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Strict):
    """Rate limits over a sliding minute; ``None`` means unlimited.

    Attributes:
        rpm: Requests per minute.
        tpm: Tokens per minute (input estimated before the call plus ``max_tokens``, settled after).
    """

    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)


class RetryPolicy(_Strict):
    """How a route tries again once every available deployment has failed.

    One *pass* tries each available deployment once, failing over at once. After a failed pass the
    route waits and makes another pass, up to ``attempts`` times.

    Attributes:
        attempts: Extra passes after the first (``0``, the default: fail over, but no retries).
        backoff_s: The first wait; it doubles each pass, up to ``max_backoff_s``.
        max_backoff_s: The longest backoff wait.
        jitter: Randomise each backoff wait between half and all of it.
        max_wait_s: The longest wait honoured, including a provider's ``Retry-After``; a longer
            one is not waited for and the error (carrying ``retry_after``) goes to the caller.
    """

    attempts: int = Field(default=0, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=8.0, ge=0)
    jitter: bool = True
    max_wait_s: float = Field(default=30.0, ge=0)


class BreakerPolicy(_Strict):
    """A per-deployment circuit breaker.

    After ``failures`` consecutive retryable failures a deployment is skipped for ``cooldown_s``;
    then one request probes it (half-open): success closes the breaker, failure opens it again.
    The breaker's state is shared by every route of a gateway that uses the deployment.

    Attributes:
        failures: Consecutive failures that open the breaker; ``0`` turns it off.
        cooldown_s: How long an open breaker skips the deployment before a probe.
    """

    failures: int = Field(default=3, ge=0)
    cooldown_s: float = Field(default=30.0, gt=0)


class Budget(_Strict):
    """A spending limit in USD per window.

    Attributes:
        limit_usd: The most that may be spent in one window.
        window: ``daily`` or ``monthly`` (UTC calendar periods) or ``total`` (never resets).
    """

    limit_usd: float = Field(gt=0)
    window: BudgetWindow = "daily"


class BudgetSettings(_Strict):
    """Budgets per key (``budgets:``): the key comes from ``metadata={"budget_key": ...}`` on a call.

    A call may also bring its own key budget: ``metadata={"budget_key": "team-a", "budget_usd": 5.0}``
    (``budget_window`` defaults to ``total``); ``aiapp serve`` does this for each virtual key.

    Attributes:
        keys: Budget per key; ``"*"`` applies to every key without its own entry.
        default_output_tokens: Output tokens reserved for a call that sets no ``max_tokens``.
        hold_ttl_s: How long a reservation holds budget; a hold left by a crashed process lapses
            after this (settled spending never does).
    """

    keys: dict[str, Budget] = Field(default_factory=dict)
    default_output_tokens: int = Field(default=1024, gt=0)
    hold_ttl_s: float = Field(default=3600.0, gt=0)


class SemanticCacheSettings(_Strict):
    """The semantic cache: a reply is reused for a differently worded but equivalent request.

    Off by default. A hit needs the same route, prompt name@version, system prompt and history,
    generation parameters and numbers in the last user message, a similar length, and a cosine
    similarity of at least ``threshold`` (measured in ``benchmarks/semantic_cache.py``).

    Attributes:
        enabled: Turn it on.
        threshold: Minimum cosine similarity of the last user messages.
        min_length_ratio: Minimum ratio of the two messages' word counts (shorter / longer).
        embedder: The embedding model (``local/all-MiniLM-L6-v2`` runs offline).
        max_entries: Entries kept per scope (oldest dropped first).
    """

    enabled: bool = False
    threshold: float = Field(default=0.93, gt=0, le=1)
    min_length_ratio: float = Field(default=0.8, ge=0, le=1)
    embedder: str = "local/all-MiniLM-L6-v2"
    max_entries: int = Field(default=10_000, gt=0)


class CacheSettings(_Strict):
    """Response caching (``cache:``). Writing the section turns the exact cache on.

    Attributes:
        mode: ``on`` (read and write), ``off``, ``record`` (always call, store every reply) or
            ``replay`` (never call: a request that was not recorded fails). ``AIAPP_CACHE_MODE``
            overrides it.
        backend: ``sqlite`` (``$AIAPP_HOME/cache.db`` unless ``path`` is set) or ``redis`` (``url``).
        path: The SQLite file (e.g. recordings kept next to a test suite).
        url: The Redis URL (``redis://127.0.0.1:6379/0``).
        ttl_s: How long an entry lives; ``null`` keeps it forever. Recordings never expire.
        semantic: The semantic cache (off by default).
    """

    mode: CacheMode = "on"
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None
    url: str | None = None
    ttl_s: float | None = Field(default=7 * 86400.0, gt=0)
    semantic: SemanticCacheSettings = Field(default_factory=SemanticCacheSettings)

    @model_validator(mode="after")
    def _backend_needs(self) -> CacheSettings:
        if self.backend == "redis" and not self.url:
            raise ValueError("the redis cache backend needs a url (redis://host:port/db)")
        return self


LITELLM_DOCS = "https://docs.litellm.ai/docs/providers"


@functools.lru_cache(maxsize=1)
def litellm_providers() -> frozenset[str]:
    """litellm's provider prefixes (``anthropic``, ``bedrock``, ...), from the shipped list."""
    text = resources.files("aiapp").joinpath("data/litellm_providers.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def provider_prefix_problem(model: str, *, provider: str | None, ours: Iterable[str]) -> str | None:
    """Why ``model``'s ``provider/`` prefix names no provider that exists, or ``None`` when it does.

    Args:
        model: A deployment's ``model:`` (``anthropic/claude-haiku-4-5``).
        provider: Its explicit ``provider:``. Another provider than ``litellm`` (one registered
            with ``register_provider``) takes any model name, so nothing is judged here.
        ours: aiapp's own prefixes (``local`` and the OpenAI-compatible fast path's).

    A name without ``/`` (``gpt-4o-mini``) is left to litellm, which knows bare model names.
    """
    if provider not in (None, "litellm") or "/" not in model:
        return None
    prefix = model.split("/", 1)[0]
    mine = set(ours) if provider is None else set()
    known = mine | litellm_providers()
    if prefix in known:
        return None
    close = difflib.get_close_matches(prefix, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = f"aiapp's ({', '.join(sorted(mine))}) or " if mine else ""
    return (
        f"unknown provider {prefix!r} in model {model!r}: the part before '/' must name one of "
        f"{where}litellm's {len(litellm_providers())} providers ({LITELLM_DOCS}){hint}"
    )


__all__ = [
    "BreakerPolicy",
    "Budget",
    "BudgetSettings",
    "BudgetWindow",
    "CacheMode",
    "CacheSettings",
    "Limits",
    "RetryPolicy",
    "SemanticCacheSettings",
    "Strategy",
    "litellm_providers",
    "provider_prefix_problem",
]
