"""What a guard says: findings inside the text, the guard's outcome, and the verdict recorded in traces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiapp._guard_config import Action
from aiapp.types import Message

Stage = Literal["input", "output"]
Taken = Literal["allow", "block", "redact", "fix", "reask", "fallback", "flag"]

__all__ = ["Action", "Finding", "GuardContext", "Outcome", "Redaction", "Stage", "Taken", "Verdict"]


@dataclass(frozen=True)
class Finding:
    """A span of the checked text that a guard objects to (an email, a secret, a banned word).

    Attributes:
        type: What was found: ``EMAIL_ADDRESS``, ``CREDIT_CARD``, ``SECRET``, ``BANNED`` ...
        start: Start offset in the checked text.
        end: End offset (exclusive).
        value: The text itself. Never written to traces or error messages.
        score: Confidence in ``[0, 1]``.
    """

    type: str
    start: int
    end: int
    value: str
    score: float = 1.0


@dataclass(frozen=True)
class Outcome:
    """A guard's raw judgement of one text, before the stack applies an action.

    Attributes:
        passed: Whether the text is acceptable.
        reason: Why not, in words (never quoting sensitive values).
        score: The guard's score, when it has one (e.g. injection probability).
        findings: Offending spans, for guards that can redact.
        fixed: A corrected text, for guards that can fix.
        details: Extra facts for the trace (e.g. unsupported sentence indexes).
    """

    passed: bool
    reason: str = ""
    score: float | None = None
    findings: tuple[Finding, ...] = ()
    fixed: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Redaction:
    """One replaced span: its type and placeholder (the original value stays out of traces).

    Attributes:
        type: The finding's type (``EMAIL_ADDRESS`` ...).
        placeholder: What replaced it in the text, e.g. ``[EMAIL_ADDRESS_1]``.
    """

    type: str
    placeholder: str


@dataclass(frozen=True)
class Verdict:
    """One guard's decision on one text, as recorded in the trace.

    Attributes:
        name: The guard's name.
        stage: ``input`` or ``output``.
        passed: Whether the text passed the guard.
        action: What was done: ``allow`` when it passed, else ``block``, ``redact``, ``fix``,
            ``reask``, ``fallback`` or ``flag`` (recorded only).
        reason: Why it failed ("" when it passed).
        score: The guard's score, when it has one.
        latency_ms: How long the guard took.
        redactions: The spans replaced (types and placeholders only).
        details: Extra facts for the trace.
    """

    name: str
    stage: Stage
    passed: bool
    action: Taken
    reason: str = ""
    score: float | None = None
    latency_ms: float = 0.0
    redactions: tuple[Redaction, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_trace(self) -> dict[str, Any]:
        """A JSON-ready dict for the trace span's ``guards`` attribute."""
        out: dict[str, Any] = {
            "name": self.name,
            "stage": self.stage,
            "passed": self.passed,
            "action": self.action,
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.reason:
            out["reason"] = self.reason
        if self.score is not None:
            out["score"] = round(self.score, 4)
        if self.redactions:
            out["redactions"] = [f"{r.type}->{r.placeholder}" for r in self.redactions]
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class GuardContext:
    """What a guard may look at besides the text.

    Attributes:
        stage: ``input`` or ``output``.
        messages: The call's messages (the prompt the reply answers).
        documents: Retrieved context a reply should be grounded in (grounding guard).
        route: The gateway route, when checked inside the gateway.
        final: ``False`` while checking a partial stream window (only windowed guards run then).
    """

    stage: Stage = "input"
    messages: Sequence[Message] = ()
    documents: Sequence[str] = ()
    route: str | None = None
    final: bool = True
