"""Redaction with placeholders, reversible where the app needs it.

The same value gets the same placeholder within one call (``[EMAIL_ADDRESS_1]`` twice for one
address), so the model can still tell two people apart. Reversible placeholders are mapped back in
the reply by :meth:`RedactionMap.restore`; irreversible ones stay.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from aiapp.guardrails._verdict import Finding, Redaction

__all__ = ["PLACEHOLDER", "RedactionMap", "redact"]

#: What a placeholder looks like: ``[EMAIL_ADDRESS_1]``.
PLACEHOLDER = re.compile(r"\[([A-Z][A-Z_]*)_(\d+)\]")


class RedactionMap:
    """Placeholders issued during one call and, for reversible ones, the values they stand for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, kind: str, value: str, *, reversible: bool) -> str:
        """The placeholder for ``value`` (the same one each time it is seen in this call)."""
        with self._lock:
            issued = self._issued.get((kind, value))
            if issued is None:
                self._counts[kind] = self._counts.get(kind, 0) + 1
                issued = f"[{kind}_{self._counts[kind]}]"
                self._issued[(kind, value)] = issued
            if reversible:
                self._originals[issued] = value
            return issued

    @property
    def reversible(self) -> bool:
        """Whether any placeholder can be mapped back."""
        with self._lock:
            return bool(self._originals)

    def restore(self, text: str) -> str:
        """``text`` with every reversible placeholder replaced by its original value."""
        with self._lock:
            originals = dict(self._originals)
        if not originals:
            return text
        return PLACEHOLDER.sub(lambda m: originals.get(m.group(0), m.group(0)), text)


def redact(
    text: str, findings: Sequence[Finding], mapping: RedactionMap, *, reversible: bool
) -> tuple[str, tuple[Redaction, ...]]:
    """Replace each finding's span with its placeholder; findings must not overlap."""
    parts: list[str] = []
    done: list[Redaction] = []
    cursor = 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < cursor:
            continue
        placeholder = mapping.placeholder(f.type, f.value, reversible=reversible)
        parts.append(text[cursor : f.start])
        parts.append(placeholder)
        done.append(Redaction(type=f.type, placeholder=placeholder))
        cursor = f.end
    parts.append(text[cursor:])
    return "".join(parts), tuple(done)
