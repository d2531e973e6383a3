"""Input limits, ban lists and denied topics."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aiapp.errors import ConfigError
from aiapp.guardrails._base import Guard, register_guard
from aiapp.guardrails._verdict import Action, Finding, GuardContext, Outcome

if TYPE_CHECKING:
    from aiapp.gateway.embedders import Embedder

__all__ = ["BanListGuard", "LimitsGuard", "TopicsGuard", "approx_tokens"]

_WORDS = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """A tokenizer-free token estimate: words and punctuation, or a quarter of the characters if more."""
    return max(len(_WORDS.findall(text)), (len(text) + 3) // 4)


@register_guard("limits")
class LimitsGuard(Guard):
    """Rejects texts that are too long, in characters or (estimated) tokens.

    Args:
        max_chars: Most characters allowed (default 32,000).
        max_tokens: Most tokens allowed, estimated by :func:`approx_tokens` (default: no limit).
        action: ``block`` (default), ``fix`` (truncate), ``fallback``, ``flag``.
        name: Name shown in verdicts.
    """

    kind = "limits"
    default_action = "block"
    actions = frozenset({"block", "fix", "fallback", "flag", "reask"})
    windowed = True

    def __init__(
        self,
        *,
        max_chars: int = 32_000,
        max_tokens: int | None = None,
        action: Action | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(action=action, name=name)
        if max_chars <= 0 or (max_tokens is not None and max_tokens <= 0):
            raise ConfigError("limits must be positive")
        self.max_chars = max_chars
        self.max_tokens = max_tokens

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Compare the text's size with the limits; ``fixed`` is the text cut to fit."""
        if len(text) > self.max_chars:
            return Outcome(
                passed=False,
                reason=f"{len(text)} characters is over the limit of {self.max_chars}",
                fixed=text[: self.max_chars],
            )
        if self.max_tokens is not None:
            tokens = approx_tokens(text)
            if tokens > self.max_tokens:
                keep = max(1, int(len(text) * self.max_tokens / tokens))
                return Outcome(
                    passed=False,
                    reason=f"about {tokens} tokens is over the limit of {self.max_tokens}",
                    fixed=text[:keep],
                )
        return Outcome(passed=True)


def _phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str] | None:
    cleaned = sorted({p.strip() for p in phrases if p.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    body = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in cleaned)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


@register_guard("banlist")
class BanListGuard(Guard):
    """Fails on banned words or phrases (whole words, any case, any spacing).

    Args:
        words: The banned words and phrases.
        action: ``block`` (default), ``redact`` (replace with ``[BANNED_n]``), ``fallback``,
            ``flag``, ``reask``.
        name: Name shown in verdicts.
    """

    kind = "banlist"
    default_action = "block"
    actions = frozenset({"block", "redact", "fallback", "flag", "reask"})
    windowed = True

    def __init__(
        self, *, words: Sequence[str], action: Action | None = None, name: str | None = None
    ) -> None:
        super().__init__(action=action, name=name)
        pattern = _phrase_pattern(words)
        if pattern is None:
            raise ConfigError("banlist needs at least one word")
        self.pattern = pattern

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Find banned phrases."""
        findings = tuple(
            Finding("BANNED", m.start(), m.end(), m.group()) for m in self.pattern.finditer(text)
        )
        if not findings:
            return Outcome(passed=True)
        return Outcome(passed=False, reason=f"contains {len(findings)} banned term(s)", findings=findings)


@register_guard("topics")
class TopicsGuard(Guard):
    """Denied topics, by keywords and (optionally) by embedding similarity to example questions.

    Args:
        denied: Topic name → keywords/phrases that mark it (``{"medical": ["diagnosis", "dosage"]}``).
        examples: Topic name → example texts; a text whose MiniLM embedding is at least
            ``threshold`` cosine-similar to one of them is on that topic.
        threshold: Cosine similarity for ``examples``.
        embedder: The embedder for ``examples`` (default: the local MiniLM).
        action: ``block`` (default), ``fallback``, ``flag``, ``reask``.
        name: Name shown in verdicts.
    """

    kind = "topics"
    default_action = "fallback"
    actions = frozenset({"block", "fallback", "flag", "reask"})

    def __init__(
        self,
        *,
        denied: Mapping[str, Sequence[str]] | None = None,
        examples: Mapping[str, Sequence[str]] | None = None,
        threshold: float = 0.6,
        embedder: Embedder | None = None,
        action: Action | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(action=action, name=name)
        if not denied and not examples:
            raise ConfigError("topics needs `denied` keywords or `examples`")
        self.keywords = {topic: p for topic, words in (denied or {}).items() if (p := _phrase_pattern(words))}
        self.examples = {topic: list(texts) for topic, texts in (examples or {}).items() if texts}
        self.threshold = threshold
        self._embedder = embedder
        self._vectors: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.heavy = bool(self.examples)

    def _example_vectors(self) -> tuple[Embedder, dict[str, Any]]:
        with self._lock:
            if self._embedder is None:
                from aiapp.gateway.embedders import build_embedder

                self._embedder = build_embedder()
            if self._vectors is None:
                self._vectors = {t: self._embedder.embed(texts) for t, texts in self.examples.items()}
            return self._embedder, self._vectors

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Keyword topics first, then example similarity."""
        for topic, pattern in self.keywords.items():
            if pattern.search(text):
                return Outcome(passed=False, reason=f"denied topic {topic!r} (keyword)", score=1.0)
        if self.examples:
            embedder, vectors = self._example_vectors()
            query = embedder.embed([text], kind="query")[0]
            for topic, matrix in vectors.items():
                similarity = float(np.max(matrix @ query))
                if similarity >= self.threshold:
                    return Outcome(
                        passed=False,
                        reason=f"denied topic {topic!r} (similarity {similarity:.2f})",
                        score=similarity,
                    )
        return Outcome(passed=True)
