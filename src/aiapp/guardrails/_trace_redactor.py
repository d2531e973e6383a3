"""What the trace store sees under ``tracing.capture: redacted``: text with PII and secrets replaced.

Offered to the gateway as the ``aiapp.redactors`` entry point ``default`` (see pyproject.toml), so
the tracing layer applies it where spans are written without importing guardrails. It runs the
same detectors as the ``pii`` and ``secrets`` guards, over every string in a span's input, output
and error, so a value a guard redacted before the model never reaches the store either — nor do
values in requests that a guard blocked, or in replies.
"""

from __future__ import annotations

from aiapp.guardrails._pii import find_pii, resolve_overlaps
from aiapp.guardrails._redact import RedactionMap, redact
from aiapp.guardrails._secrets import find_secrets

__all__ = ["redact_for_trace"]


def redact_for_trace(text: str) -> str:
    """``text`` with every PII value and secret replaced by a placeholder (``[EMAIL_ADDRESS_1]``)."""
    if not text:
        return text
    findings = resolve_overlaps([*find_secrets(text), *find_pii(text)], order=("SECRET",))
    if not findings:
        return text
    redacted, _ = redact(text, findings, RedactionMap(), reversible=False)
    return redacted
