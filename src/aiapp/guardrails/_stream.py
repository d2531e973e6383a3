"""Output guards on streams: text is released only after the guards have seen what follows it.

The gate holds back the last ``window_chars`` characters of the reply. Each new chunk is appended
and the windowed (span) guards — PII, secrets, ban lists, limits — scan everything not yet
released, so a secret split across chunks is whole in the buffer before any of it leaves. Blocks
raise at once (nothing of the secret was released); redactions are made in the buffer. Flag-only
guards that need the whole reply (grounding) run when the stream ends.

Spans longer than ``window_chars - hold`` may start leaving before they end; blocking guards see
their first ``window_chars`` characters, which is enough for every key format detected.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiapp.errors import GuardrailError
from aiapp.guardrails._redact import RedactionMap
from aiapp.guardrails._stack import GuardReport, GuardStack
from aiapp.guardrails._verdict import Verdict
from aiapp.types import Message

__all__ = ["StreamGate", "merge_verdicts"]

_PLACEHOLDER_MAX = 40


def _safe_cut(text: str, cut: int) -> int:
    """Move ``cut`` back so it does not split a ``[PLACEHOLDER_n]``."""
    opening = text.rfind("[", max(0, cut - _PLACEHOLDER_MAX), cut)
    if opening != -1 and "]" not in text[opening:cut]:
        return opening
    return cut


def merge_verdicts(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """One verdict per guard over many windows: failed if any failed, latencies and redactions summed."""
    merged: dict[tuple[str, str], Verdict] = {}
    severity = {"allow": 0, "flag": 1, "redact": 2, "fix": 3, "reask": 4, "fallback": 5, "block": 6}
    for v in verdicts:
        key = (v.stage, v.name)
        seen = merged.get(key)
        if seen is None:
            merged[key] = v
            continue
        worst = v if severity[v.action] > severity[seen.action] else seen
        merged[key] = Verdict(
            name=v.name,
            stage=v.stage,
            passed=seen.passed and v.passed,
            action=worst.action,
            reason=worst.reason or seen.reason or v.reason,
            score=worst.score if worst.score is not None else seen.score,
            latency_ms=seen.latency_ms + v.latency_ms,
            redactions=seen.redactions + v.redactions,
            details=worst.details or seen.details,
        )
    return list(merged.values())


class StreamGate:
    """Buffers a streamed reply and releases only text the output guards have cleared.

    Args:
        stack: The output guards.
        redactions: The call's placeholder map (reversible input placeholders are restored on release).
        messages: The call's messages.
        documents: Retrieved context (for grounding).
        route: The route, for errors.
    """

    def __init__(
        self,
        stack: GuardStack,
        *,
        redactions: RedactionMap,
        messages: Sequence[Message] = (),
        documents: Sequence[str] = (),
        route: str | None = None,
    ) -> None:
        self.stack = stack
        self.redactions = redactions
        self.messages = messages
        self.documents = documents
        self.route = route
        self.window = stack.window_chars
        self.hold = min(32, self.window // 4)
        self.pending = ""
        self.released: list[str] = []
        self.verdicts: list[Verdict] = []
        self.fallback: str | None = None
        self.finished = False

    def _check(self, text: str, *, final: bool, only: str) -> GuardReport:
        try:
            report = self.stack.check(
                text,
                messages=self.messages,
                documents=self.documents,
                route=self.route,
                redactions=self.redactions,
                final=final,
                only=only,  # type: ignore[arg-type]
                hold=0 if final else self.hold,
            )
        except GuardrailError as exc:
            self.verdicts.extend(v for v in exc.verdicts if isinstance(v, Verdict))
            raise
        self.verdicts.extend(report.verdicts)
        return report

    def _release(self, final: bool) -> str:
        report = self._check(self.pending, final=final, only="windowed")
        self.pending = report.text
        if report.fallback is not None or report.reask is not None:
            self._fail_over(report)
            return self.fallback or ""
        cut = len(self.pending) if final else _safe_cut(self.pending, len(self.pending) - self.window)
        if cut <= 0:
            return ""
        out, self.pending = self.pending[:cut], self.pending[cut:]
        self.released.append(out)
        return self.redactions.restore(out)

    def _fail_over(self, report: GuardReport) -> None:
        failed = report.reask or report.verdicts[-1]
        if self.released:  # text already left: too late for a fallback answer
            raise GuardrailError(
                guard=failed.name,
                reason=failed.reason,
                stage="output",
                route=self.route,
                verdicts=tuple(self.verdicts),
            )
        self.fallback = self.stack.fallback
        self.pending = ""

    def feed(self, delta: str) -> str:
        """Add a chunk's text; return the text now safe to release ("" if none)."""
        if self.fallback is not None:
            return ""
        self.pending += delta
        if len(self.pending) <= self.window:
            return ""
        return self._release(final=False)

    def finish(self) -> str:
        """The stream ended: check and release the rest, then run whole-reply (flag) guards."""
        if self.finished or self.fallback is not None:
            return ""
        self.finished = True
        rest = self._release(final=True)
        if self.fallback is None and any(not g.windowed for g in self.stack.guards):
            self._check("".join(self.released), final=True, only="unwindowed")
        return rest
