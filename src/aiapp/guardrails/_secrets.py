"""Secrets: API keys and tokens by their known prefixes, key/value assignments and entropy.

Known formats (OpenAI/Anthropic ``sk-``, AWS ``AKIA``, GitHub ``ghp_``/``github_pat_``, GitLab,
Slack, Google ``AIza``, Stripe, Hugging Face ``hf_``, JWTs, PEM private keys) match by shape.
Anything assigned to a secret-sounding name (``api_key=...``, ``password: ...``) counts when the
value looks random (Shannon entropy), and so does a long random-looking token on its own.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from aiapp.guardrails._base import Guard, register_guard
from aiapp.guardrails._pii import resolve_overlaps
from aiapp.guardrails._verdict import Action, Finding, GuardContext, Outcome

__all__ = ["SecretsGuard", "find_secrets", "shannon_entropy"]

SECRET = "SECRET"

_KNOWN: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        (
            "private_key",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?",
        ),
        (
            "openai_or_anthropic",
            r"(?<![\w-])sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        ),
        ("aws_access_key", r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Z0-9])"),
        ("github", r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
        ("gitlab", r"(?<!\w)glpat-[A-Za-z0-9_-]{20,}"),
        ("slack", r"(?<!\w)xox[abprs]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9/]+"),
        ("google_api_key", r"(?<!\w)AIza[0-9A-Za-z_-]{35}"),
        ("stripe", r"(?<!\w)(?:sk|rk|pk|whsec)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("huggingface", r"(?<!\w)hf_[A-Za-z0-9]{30,}"),
        ("jwt", r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        ("url_credentials", r"(?<=://)[^\s:/@]{1,64}:[^\s:/@]{6,128}(?=@)"),
    )
)
_ASSIGNMENT = re.compile(
    r"(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|access[_-]?(?:key|token)|"
    r"auth[_-]?token|token|password|passwd|pwd|private[_-]?key|bearer)\b[\"']?\s*(?:[:=]|=>|\bis\b)?\s*[\"']?"
    r"(?P<value>[A-Za-z0-9+/=_\-.!@#$%^&*~]{8,})"
)
_TOKEN = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{32,}={0,2}(?![\w+/=-])")


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` (random base64 is ~5-6, English words ~3-4)."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _classes(value: str) -> int:
    return sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )


def find_secrets(text: str, *, min_entropy: float = 3.0, token_entropy: float = 4.0) -> list[Finding]:
    """Secret spans in ``text``: known key formats, secret assignments, and long random tokens.

    Args:
        text: The text to scan.
        min_entropy: Bits per character a value assigned to a secret-sounding name must reach.
        token_entropy: Bits per character a bare token (32+ characters, mixed case and digits)
            must reach to count as a secret on its own.
    """
    found: list[Finding] = []
    for _, pattern in _KNOWN:
        found.extend(Finding(SECRET, m.start(), m.end(), m.group(), 0.99) for m in pattern.finditer(text))
    for m in _ASSIGNMENT.finditer(text):
        value = m.group("value").rstrip(".,;")
        if shannon_entropy(value) >= min_entropy and _classes(value) >= 2 and not value.isalpha():
            start = m.start("value")
            found.append(Finding(SECRET, start, start + len(value), value, 0.8))
    for m in _TOKEN.finditer(text):
        value = m.group()
        if _classes(value) >= 3 and shannon_entropy(value) >= token_entropy:
            found.append(Finding(SECRET, m.start(), m.end(), value, 0.7))
    return resolve_overlaps(found)


@register_guard("secrets")
class SecretsGuard(Guard):
    """Catches API keys, tokens, passwords and private keys; blocks by default.

    Args:
        min_entropy: See :func:`find_secrets`.
        token_entropy: See :func:`find_secrets`.
        action: ``block`` (default), ``redact``, ``fallback``, ``flag`` or ``reask``.
        name: Name shown in verdicts.
    """

    kind = "secrets"
    default_action = "block"
    actions = frozenset({"block", "redact", "fallback", "flag", "reask"})
    windowed = True

    def __init__(
        self,
        *,
        min_entropy: float = 3.0,
        token_entropy: float = 4.0,
        action: Action | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(action=action, name=name)
        self.min_entropy = min_entropy
        self.token_entropy = token_entropy

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Find secrets; fail when there is any."""
        findings = find_secrets(text, min_entropy=self.min_entropy, token_entropy=self.token_entropy)
        if not findings:
            return Outcome(passed=True)
        return Outcome(
            passed=False,
            reason=f"found {len(findings)} secret{'s' if len(findings) > 1 else ''} (API key, token or password)",
            score=max(f.score for f in findings),
            findings=tuple(findings),
        )
