"""PII detection: email, phone, credit card (Luhn), IBAN (mod-97), US SSN, IP address.

Detection is rules with checksums, no model: fast (well under a millisecond for a prompt) and
measured on Presidio's synthetic PII set by ``benchmarks/guardrails.py``. Overlaps resolve by
strength: a checksum-validated number (card, IBAN) beats a phone-shaped one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence

from aiapp.errors import ConfigError
from aiapp.guardrails._base import Guard, register_guard
from aiapp.guardrails._verdict import Action, Finding, GuardContext, Outcome

__all__ = ["PII_TYPES", "PIIGuard", "find_pii", "iban_valid", "luhn_valid"]

EMAIL = "EMAIL_ADDRESS"
PHONE = "PHONE_NUMBER"
CARD = "CREDIT_CARD"
IBAN = "IBAN_CODE"
SSN = "US_SSN"
IP = "IP_ADDRESS"

#: The entity types this module detects (Presidio's names), strongest first.
PII_TYPES: tuple[str, ...] = (EMAIL, IBAN, CARD, SSN, IP, PHONE)

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
_CARD_RE = re.compile(
    r"(?<![\w+-])(?:\d{12,19}|\d{4}(?P<sep>[ -])\d{4}(?P=sep)\d{4}(?:(?P=sep)\d{1,7})?|\d{4}[ -]\d{6}[ -]\d{4,5})(?![\d-])"
)
_IBAN_RE = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,3})?)"
    r"(?![A-Za-z0-9])"
)
_SSN_RE = re.compile(r"(?<![\d-])(?P<a>\d{3})(?P<sep>[- ])(?P<g>\d{2})(?P=sep)(?P<s>\d{4})(?![\d-])")
_IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
_IPV6_RE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE_RE = re.compile(
    r"(?<![\w+.-])"
    r"(?:\+\d{1,3}[ .-]?)?"  # country code
    r"(?:\(\d{1,4}\)[ .-]?|\d{1,5}[ .-]?)?"  # area code, maybe in parentheses
    r"(?:\(0\)[ ]?)?"  # the (0) trunk prefix written after +CC
    r"\d{2,8}(?:[ .-]\d{2,8}){0,4}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?"  # extension
    r"(?!\w|[-.]\d)"
)
_DATE_IN = re.compile(r"\b\d{4}[-./]\d{1,2}[-./]\d{1,2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{4}\b")
# Shapes that only phones have: dashes or dots between 3-4 digit groups, or three or more groups.
_STRONG_SHAPE = re.compile(
    r"^\d{2,4}[-.]\d{2,4}[-.]\d{2,4}|^\d{1,5}(?:[ .-]\d{1,5}){2,}$|^\d{3}[-.]\d{4}$|^\d{10,11}$"
)
_PHONE_WORDS = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|calls|calling|fax|office|home|work|number|reach|"
    r"contact|text|sms|whatsapp|dial|ring|answering|line|ph|mob|telefon|handy|nummer)\b"
)


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum (payment card numbers do)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """Whether ``text`` (spaces allowed, any case) is an IBAN with a valid mod-97 check."""
    compact = text.replace(" ", "").upper()
    if not (15 <= len(compact) <= 34) or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _cards(text: str) -> Iterable[Finding]:
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 12 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1:
            yield Finding(CARD, m.start(), m.end(), m.group(), 0.95)


def _ibans(text: str) -> Iterable[Finding]:
    for m in _IBAN_RE.finditer(text):
        value = m.group().rstrip()
        if iban_valid(value):
            yield Finding(IBAN, m.start(), m.start() + len(value), value, 0.99)


def _ssns(text: str) -> Iterable[Finding]:
    for m in _SSN_RE.finditer(text):
        area, group, serial = m.group("a"), m.group("g"), m.group("s")
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        yield Finding(SSN, m.start(), m.end(), m.group(), 0.85 if m.group("sep") == "-" else 0.6)


def _ips(text: str) -> Iterable[Finding]:
    for m in _IPV4_RE.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield Finding(IP, m.start(), m.end(), m.group(), 0.9)
    for m in _IPV6_RE.finditer(text):
        value = m.group()
        if sum(ch.isalnum() for ch in value) < 6:
            continue
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        yield Finding(IP, m.start(), m.end(), value, 0.9)


def _emails(text: str) -> Iterable[Finding]:
    for m in _EMAIL_RE.finditer(text):
        yield Finding(EMAIL, m.start(), m.end(), m.group(), 0.99)


def _phones(text: str) -> Iterable[Finding]:
    for m in _PHONE_RE.finditer(text):
        value = m.group()
        core = re.split(r"\s?(?:x|ext\.?)\s?\d", value)[0]
        digits = sum(ch.isdigit() for ch in core)
        if not 7 <= digits <= 15 or _DATE_IN.search(core):
            continue
        if core.isdigit() and digits > 12:
            continue  # a long bare number is an id or a card, not a phone
        if _SSN_RE.fullmatch(core):
            continue  # SSN-shaped: an SSN (or an invalid one), not a phone
        strong = core.startswith(("+", "(")) or bool(_STRONG_SHAPE.search(core))
        if not strong and not _near_phone_word(text, m.start(), m.end()):
            continue  # "370 3911 Fourth Avenue" is an address, "2450" a street number
        yield Finding(PHONE, m.start(), m.end(), value, 0.8 if strong else 0.6)


def _near_phone_word(text: str, start: int, end: int, reach: int = 48) -> bool:
    before = text[max(0, start - reach) : start]
    after = text[end : end + 16]
    return bool(_PHONE_WORDS.search(before) or _PHONE_WORDS.search(after))


_DETECTORS: dict[str, Callable[[str], Iterable[Finding]]] = {
    EMAIL: _emails,
    CARD: _cards,
    IBAN: _ibans,
    SSN: _ssns,
    IP: _ips,
    PHONE: _phones,
}


def find_pii(text: str, types: Sequence[str] = PII_TYPES) -> list[Finding]:
    """Every PII span of the given types in ``text``, in order, without overlaps.

    Where two findings overlap, the type listed first in :data:`PII_TYPES` wins (checksums beat
    shapes), then the longer span.
    """
    found: list[Finding] = []
    for kind in PII_TYPES:
        if kind in types:
            found.extend(_DETECTORS[kind](text))
    return resolve_overlaps(found, order=PII_TYPES)


def resolve_overlaps(findings: list[Finding], *, order: Sequence[str] = ()) -> list[Finding]:
    """Keep non-overlapping findings: earlier types in ``order`` first, then longer spans."""
    rank = {kind: i for i, kind in enumerate(order)}
    ranked = sorted(findings, key=lambda f: (rank.get(f.type, len(rank)), -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


@register_guard("pii")
class PIIGuard(Guard):
    """Finds PII and, by default, redacts it with placeholders (``[EMAIL_ADDRESS_1]``).

    On input, redactions are reversible by default: the model sees placeholders, and the stack maps
    them back to the original values in the reply. On output, redactions are final.

    Args:
        types: Entity types to look for (default: all of :data:`PII_TYPES`).
        reversible: Map placeholders back in the reply (input stage only).
        action: ``redact`` (default), ``block``, ``fallback``, ``flag`` or ``reask``.
        name: Name shown in verdicts.
    """

    kind = "pii"
    default_action = "redact"
    actions = frozenset({"redact", "block", "fallback", "flag", "reask"})
    windowed = True

    def __init__(
        self,
        *,
        types: Sequence[str] | None = None,
        reversible: bool = True,
        action: Action | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(action=action, name=name)
        chosen = tuple(types) if types is not None else PII_TYPES
        unknown = sorted(set(chosen) - set(PII_TYPES))
        if unknown:
            raise ConfigError(f"unknown PII types {unknown} (known: {', '.join(PII_TYPES)})")
        self.types = chosen
        self.reversible = reversible

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Find PII spans; fail when there is any."""
        findings = find_pii(text, self.types)
        if not findings:
            return Outcome(passed=True)
        counts: dict[str, int] = {}
        for f in findings:
            counts[f.type] = counts.get(f.type, 0) + 1
        reason = "found " + ", ".join(f"{n} {kind}" for kind, n in counts.items())
        return Outcome(
            passed=False, reason=reason, score=max(f.score for f in findings), findings=tuple(findings)
        )
