"""What every scorer returns, and what it is given.

A :class:`Score` is either scored (``value`` in [0, 1] by convention, ``passed`` when the scorer has
a pass mark) or *unscored* with a reason — never NaN, never a silent 0. Reports count unscored cases
separately, so a judge that could not run does not drag a metric down or prop it up.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aiapp.types import Hit, ToolCall, Usage


class Score(BaseModel):
    """One scorer's verdict on one case.

    Attributes:
        scorer: The scorer's name (the metric name in reports).
        value: The score, or ``None`` when unscored.
        passed: Whether the case passes this scorer's bar, when it has one.
        reason: Why — required when unscored; a short explanation otherwise.
        metadata: Anything else worth keeping (judge reply, matched span, per-rater scores ...).
    """

    model_config = ConfigDict(extra="forbid")

    scorer: str
    value: float | None = None
    passed: bool | None = None
    reason: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def scored(self) -> bool:
        """Whether this score has a value."""
        return self.value is not None

    @classmethod
    def unscored(cls, scorer: str, reason: str, **metadata: Any) -> Score:
        """A score that could not be computed, and why."""
        return cls(scorer=scorer, value=None, passed=None, reason=reason, metadata=metadata)


class Case(BaseModel):
    """One row of an eval dataset.

    Attributes:
        id: Stable id (from the dataset, or the row number).
        input: What the target receives: a question string or a mapping of prompt variables.
        expected: The reference answer, when there is one.
        metadata: Everything else in the row (gold sources, tags, difficulty ...).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    input: str | dict[str, Any]
    expected: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def question(self) -> str:
        """The input as text (a mapping's ``question``/``input``/``query`` field, or its JSON)."""
        if isinstance(self.input, str):
            return self.input
        for key in ("question", "input", "query", "task", "text"):
            value = self.input.get(key)
            if isinstance(value, str):
                return value
        import json

        return json.dumps(self.input, sort_keys=True)


class Output(BaseModel):
    """What a target produced for one case.

    Attributes:
        text: The answer text.
        hits: Retrieved context (RAG targets), best first.
        tool_calls: Tool calls made (agent targets).
        data: Structured output or target-specific extras (agent steps, stop reason ...).
        usage: Tokens and cost.
        latency_ms: Wall time of the target call.
        trace_id: The trace of the call, to open in ``aiapp traces show``.
        error: When the target itself failed: the error text (scorers then return unscored).
    """

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    hits: list[Hit] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float = 0.0
    trace_id: str | None = None
    error: str | None = None


class Sample(BaseModel):
    """A case and the target's output for it: what a scorer looks at."""

    model_config = ConfigDict(extra="forbid")

    case: Case
    output: Output
    repeat: int = 0
