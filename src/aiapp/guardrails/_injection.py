"""Prompt-injection and jailbreak detection: signature rules, then a small classifier.

A rule hit (``ignore all previous instructions``, ``vergiss alles``, ``developer mode`` ...) blocks
at once; otherwise :class:`~aiapp.guardrails._classifier.InjectionClassifier` decides. Measured on
the deepset prompt-injection test split and XSTest's safe prompts by ``benchmarks/guardrails.py``.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from aiapp.guardrails._base import Guard, register_guard
from aiapp.guardrails._classifier import InjectionClassifier, ModelKind, prepare
from aiapp.guardrails._verdict import Action, GuardContext, Outcome

if TYPE_CHECKING:
    from aiapp.gateway.embedders import Embedder

__all__ = ["SIGNATURES", "InjectionGuard", "match_signature"]

_PREV = r"(?:all\s+|any\s+|the\s+|your\s+|my\s+)*(?:previous|prior|above|earlier|preceding|foregoing|former|initial|original)?\s*"
_WHAT = r"(?:instructions?|prompts?|rules|directions|guidelines|context|tasks?|assignments?|orders|information|commands|messages|texts?)"

#: ``(name, pattern)`` pairs; a match marks the text as an injection with score 0.99.
SIGNATURES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        (
            "ignore_instructions",
            rf"\b(?:ignore|disregard|forget|skip|override|abandon|drop)\s+{_PREV}{_WHAT}\b",
        ),
        (
            "ignore_above",
            r"\b(?:ignore|disregard|forget)\s+(?:everything|all|the\s+above|above|that)\b(?:\s+(?:before|above|said|prior))?",
        ),
        (
            "new_task",
            r"\bnow\b[^.?!]{0,40}\bnew\s+(?:tasks?|instructions?|assignments?|challenge)\b|\bnew\s+(?:tasks|instructions)\s+follow\b",
        ),
        (
            "reveal_prompt",
            r"\b(?:show|print|reveal|repeat|output|display|tell|give)\b[^.?!]{0,20}\b(?:your|the|all|initial|system|hidden)\b[^.?!]{0,12}\b(?:system\s+)?(?:prompts?|prompt\s+texts?|instructions)\b",
        ),
        ("prompt_beginning", r"\b(?:beginning|start)\s+of\s+(?:this|the|your)\s+prompt\b"),
        (
            "role_override",
            r"\byou\s+are\s+now\s+(?:a|an|the|in|my|no\s+longer)\b|\bfrom\s+now\s+on\s+you\s+(?:are|will)\b",
        ),
        (
            "jailbreak_modes",
            r"\b(?:developer\s+mode|DAN\s+mode|do\s+anything\s+now|jailbreak(?:ed)?|unfiltered\s+mode|no\s+restrictions)\b",
        ),
        (
            "de_forget",
            r"\b(?:vergiss|vergessen\s+sie|ignoriere|ignorieren\s+sie|missachte)\b[^.?!]{0,30}\b(?:alles|alle|vorherigen|bisherigen|obigen|anweisungen|aufgaben|befehle|informationen)\b",
        ),
        (
            "de_new_task",
            r"\b(?:neue|neuen)\s+(?:aufgabe|aufgaben|anweisung|anweisungen)\b[^.?!]{0,20}\b(?:folgen|kommen|starten|beginnen)\b|\bnun\s+folgen\s+neue\b",
        ),
        ("de_reveal", r"\b(?:zeige?|gib|nenne)\b[^.?!]{0,20}\b(?:deine[n]?|alle)\b[^.?!]{0,12}\bprompt"),
        (
            "es_forget",
            r"\b(?:olvida|olvide|olvidar|ignora|ignore)\s+(?:todo|todas|todos|las\s+instrucciones)\b",
        ),
        (
            "other_forget",
            r"\b(?:oubliez|oublie|ignorez)\s+(?:toutes?|tout)\b|\bзабудь(?:те)?\s+вс[её]\b|\bzaboravi\s+sve\b",
        ),
        (
            "leave_previous",
            r"\b(?:leave|put|remove|erase|delete)\s+(?:all\s+)?(?:the\s+)?(?:previous|prior|earlier)\s+(?:information|tasks|instructions)\b",
        ),
        (
            "de_previous",
            r"\b(?:alle\s+)?(?:vorherigen|bisherigen|vorangegangenen|obigen)\s+(?:informationen|instruktionen|anweisungen|aufgaben|ausführungen)\b[^.?!]{0,40}\b(?:ignorieren|vergessen|irrelevant|hinter\s+sich|streichen|nicht)\b|\babweichend\s+zu\s+vorherigen\b",
        ),
        (
            "role_play",
            r"\b(?:i\s+want\s+you\s+to\s+|please\s+)?act\s+as\s+(?:a|an|my)\s+\w+|\bpretend\s+(?:you\s+are|to\s+be|you\s+can)\b|\b(?:imagine|suppose)\s+you\s+are\b|\byou\s+are\s+role-?playing\b|\bals\s+[\w-]+\s+fungieren\b|\bstell\s+dir\s+vor,?\s+du\s+bist\b",
        ),
        (
            "override_instructions",
            r"\b(?:change|update|replace)\s+your\s+instructions\b|\byour\s+(?:new\s+)?instructions\s+are\s+now\b|\badditional\s+instruction\b|\bnew\s+instructions\b",
        ),
        (
            "force_output",
            r"\b(?:just|only)\s+output\b|\brepeat\s+after\s+me\b|\bdo\s+not\s+(?:answer|look)\b[^.?!]{0,40}\b(?:output|say|write)\b|\bsay\s+that\s+you\s+(?:hate|love)\b",
        ),
        (
            "ignore_sources",
            r"\b(?:not|without)\s+(?:by|using|from)\s+the\s+(?:articles|documents|context)\b|\bdisregarding\s+the\s+(?:articles|documents|context)\b",
        ),
        (
            "stop_and_do",
            r"(?i:\bstop)\s*[:,!-]\s*(?:write|say|ignore|print|output)\b|\bACHTUNG\s*-\s*STOPP\b|\bATTENTION\s*-\s*STOP\b",
        ),
        ("command_assert", r"(?:^|[.!?]\s+)(?:state|claim|declare|proclaim)\s+that\b"),
        (
            "task_done_now",
            r"\b(?:that\s+is|that's|this\s+is)\s+(?:enough|done)\.\s+now\b|\bdas\s+(?:ist\s+erledigt|genügt)\.\s",
        ),
    )
)


def match_signature(text: str) -> str | None:
    """The name of the first injection signature ``text`` matches, or ``None``.

    The text is normalized first (:func:`~aiapp.guardrails._classifier.prepare`), so zero-width
    characters or s p a c e d letters do not hide a signature.
    """
    text = prepare(text)
    for name, pattern in SIGNATURES:
        if pattern.search(text):
            return name
    return None


_SHARED: dict[tuple[str, float | None, str | None], InjectionClassifier] = {}
_SHARED_LOCK = threading.Lock()


def _shared_classifier(
    model: ModelKind, threshold: float | None, weights: Path | None
) -> InjectionClassifier:
    key = (model, threshold, str(weights) if weights else None)
    with _SHARED_LOCK:
        classifier = _SHARED.get(key)
        if classifier is None:
            classifier = InjectionClassifier(model=model, threshold=threshold, weights=weights)
            _SHARED[key] = classifier
        return classifier


@register_guard("injection")
class InjectionGuard(Guard):
    """Blocks prompt-injection and jailbreak attempts in user input.

    Args:
        model: ``auto`` (default: the n-gram model when it is confident, else multilingual
            sentence embeddings + n-grams), ``accurate`` (the same cascade tuned for F1: embeds
            more inputs), ``full`` (always the embeddings) or ``lite`` (n-grams only: no
            embedding model, fastest, least accurate).
        threshold: Override the shipped decision threshold (higher blocks less).
        rules: Use the signature rules before the classifier.
        embedder: The MiniLM embedder, for weights whose ``full`` model reads MiniLM features
            (the fallback without the ``multilingual`` extra; default: the shared local MiniLM).
        multilingual: The multilingual encoder for the ``full`` model (default: the shared
            USE Multilingual v3).
        weights: Path to other weights written by ``scripts/train_injection_classifier.py``.
        segment_chars: Longer texts are scored by their first and last segments of this size.
        action: ``block`` (default), ``fallback``, ``flag``.
        name: Name shown in verdicts.
    """

    kind = "injection"
    default_action = "block"
    actions = frozenset({"block", "fallback", "flag", "reask"})
    heavy = True

    def __init__(
        self,
        *,
        model: ModelKind = "auto",
        threshold: float | None = None,
        rules: bool = True,
        embedder: Embedder | None = None,
        multilingual: Embedder | None = None,
        weights: str | Path | None = None,
        segment_chars: int = 1500,
        action: Action | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(action=action, name=name)
        path = Path(weights) if weights is not None else None
        if embedder is not None or multilingual is not None:
            self.classifier = InjectionClassifier(
                model=model, embedder=embedder, multilingual=multilingual, threshold=threshold, weights=path
            )
        else:
            self.classifier = _shared_classifier(model, threshold, path)
        self.rules = rules
        self.segment_chars = segment_chars

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Rules first; then the classifier's probability against its threshold."""
        if not text.strip():
            return Outcome(passed=True, score=0.0)
        if self.rules:
            rule = match_signature(text)
            if rule is not None:
                return Outcome(
                    passed=False,
                    reason=f"matches injection signature {rule!r}",
                    score=0.99,
                    details={"rule": rule},
                )
        n = self.segment_chars
        segments = [text] if len(text) <= 2 * n else [text[:n], text[-n:]]
        score = max(self.classifier.scores(segments))
        if score >= self.classifier.threshold:
            return Outcome(
                passed=False,
                reason=f"injection classifier score {score:.2f} >= {self.classifier.threshold:.2f}",
                score=score,
            )
        return Outcome(passed=True, score=score)
