"""Rollout settings shared by routes (``configs/aiapp.yaml``) and deploy labels (``prompts/labels.yaml``).

Kept beside :mod:`aiapp.config` (the leftmost layer) so both files validate without importing
:mod:`aiapp.rollout`. A **shadow** runs a second candidate on the same input after the primary has
answered (never delaying it, never shown to the user)::

    routes:
      support:
        deployments: [{model: openai/gpt-4o-mini}]
        shadow: {route: candidate, sample: 0.2, max_in_flight: 4, budget_usd: 1}

    # prompts/labels.yaml
    production:
      support_answer:
        split: {v2: 90, v3: 10}
        canary: {arm: v3, error_rate: 0.05, min_samples: 200}
        shadow: {prompt: support_answer@v4, route: openai, sample: 0.2}

A **canary** names one arm of a split whose live metrics are compared with the control arm's; when
one regresses beyond its threshold (with at least ``min_samples`` calls on each side) the canary's
weight drops to 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["STICKY_KEYS", "CanarySpec", "ShadowSpec", "bucket", "key_hash", "sticky_key"]

STICKY_KEYS = ("rollout_key", "user", "session_id")
"""Call metadata fields that carry the caller's key, in order of preference (``user`` is OpenAI's)."""


def bucket(key: str, salt: str) -> float:
    """A stable point in [0, 1) for ``key`` within the experiment ``salt`` (BLAKE2b, 64 bits).

    Routes (``strategy: weighted``) and label splits both assign arms by it, so the same key
    always lands in the same arm.
    """
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0  # 2**64


def key_hash(key: str) -> str:
    """A short, non-reversible form of a caller key for traces (the key itself may be a user id)."""
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def sticky_key(metadata: Mapping[str, Any] | None) -> str | None:
    """The caller's key in call metadata (the first of :data:`STICKY_KEYS` set), or ``None``."""
    if not metadata:
        return None
    for name in STICKY_KEYS:
        value = metadata.get(name)
        if isinstance(value, str) and value:
            return value
    return None


_VERSION = r"^v[1-9][0-9]*$"


class ShadowSpec(BaseModel):
    """What runs in the shadow of a route or a label's prompt.

    Attributes:
        prompt: The prompt version to render with the primary's variables (``name@vN``; labels
            only). ``None`` sends the primary's own messages.
        route: The route the shadow calls; ``None`` uses the primary's route (labels only).
        sample: Share of primary calls that are shadowed (sticky by the caller's key when given).
        max_in_flight: Shadows running at once; one more is dropped, never queued.
        budget_usd: What shadows may spend in this process; once spent, shadows are dropped.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    route: str | None = None
    sample: float = Field(default=1.0, ge=0.0, le=1.0)
    max_in_flight: int = Field(default=4, ge=1)
    budget_usd: float | None = Field(default=None, ge=0.0)


class CanarySpec(BaseModel):
    """Guard rails on a canary arm, compared with its control arm.

    Thresholds are the largest regression tolerated (canary minus control, in absolute terms:
    ``error_rate: 0.05`` allows the canary five points more errors); ``None`` turns a metric off.

    Attributes:
        arm: The canary's version (``v3``); it must be an arm of the split.
        control: The arm it is compared with; default: the split's other arm with the most weight.
        min_samples: Calls needed on each arm before a metric may trigger a rollback.
        error_rate: Failed calls.
        guard_rate: Calls on which a guard blocked, redacted or flagged something.
        negative_feedback: Feedback rows with a negative score, per call with feedback.
        online_score: Drop in the mean online eval score (the trace store's scores).
        window_s: How far back the metrics look.
        check_every: Check after this many calls of the experiment (per process).
        confidence: The regression must also hold at this confidence (one-sided), so noise on
            ``min_samples`` calls does not roll back a healthy canary.
    """

    model_config = ConfigDict(extra="forbid")

    arm: str = Field(pattern=_VERSION)
    control: str | None = Field(default=None, pattern=_VERSION)
    min_samples: int = Field(default=100, ge=1)
    error_rate: float | None = Field(default=0.05, ge=0.0, le=1.0)
    guard_rate: float | None = Field(default=0.05, ge=0.0, le=1.0)
    negative_feedback: float | None = Field(default=0.1, ge=0.0, le=1.0)
    online_score: float | None = Field(default=0.1, ge=0.0)
    window_s: float = Field(default=86_400.0, gt=0)
    check_every: int = Field(default=20, ge=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)

    @field_validator("arm", "control", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value
