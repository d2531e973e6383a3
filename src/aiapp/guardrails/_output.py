"""Output guards: JSON (and JSON-schema) validity, and grounding in the retrieved context."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aiapp.guardrails._base import Guard, register_guard
from aiapp.guardrails._verdict import Action, GuardContext, Outcome

if TYPE_CHECKING:
    from aiapp.gateway.embedders import Embedder

__all__ = ["GroundingGuard", "JSONGuard", "context_documents", "split_sentences"]

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _decode(text: str) -> tuple[Any, str | None]:
    body = text.strip()
    fence = _FENCE.match(body)
    if fence:
        body = fence.group(1).strip()
    try:
        return json.loads(body), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


def _extract(text: str) -> Any:
    """The first balanced JSON object or array inside ``text`` (tolerating trailing commas), or ``None``."""
    for opener, closer in (("{", "}"), ("[", "]")):
        start = text.find(opener)
        while start != -1:
            depth, in_string, escaped = 0, False, False
            for i in range(start, len(text)):
                ch = text[i]
                if in_string:
                    escaped = ch == "\\" and not escaped
                    if ch == '"' and not escaped:
                        in_string = False
                    continue
                if ch == '"':
                    in_string = True
                elif ch == opener:
                    depth += 1
                elif ch == closer:
                    depth -= 1
                    if depth == 0:
                        candidate = _TRAILING_COMMA.sub(r"\1", text[start : i + 1])
                        try:
                            return json.loads(candidate)
                        except json.JSONDecodeError:
                            break
            start = text.find(opener, start + 1)
    return None


@register_guard("json")
class JSONGuard(Guard):
    """The reply must be JSON, and match ``schema`` when one is given.

    A reply with prose or a trailing comma around otherwise valid JSON is fixed locally (the JSON
    is extracted); anything else is re-asked (default), like the prompt layer's repair attempt.

    Args:
        schema: A JSON Schema (draft 2020-12) the value must match.
        repair: Try the local fix before failing.
        action: ``reask`` (default), ``fix`` (local repair only), ``block``, ``fallback``, ``flag``.
        name: Name shown in verdicts.
    """

    kind = "json"
    default_action = "reask"
    actions = frozenset({"reask", "fix", "block", "fallback", "flag"})
    stages = frozenset({"output"})

    def __init__(
        self,
        *,
        schema: dict[str, Any] | None = None,
        repair: bool = True,
        action: Action | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(action=action, name=name)
        if schema is not None:
            from aiapp.prompts._schema import schema_problem  # the one module importing jsonschema

            problem = schema_problem(schema)
            if problem:
                from aiapp.errors import ConfigError

                raise ConfigError(f"json guard: invalid JSON schema: {problem}")
        self.schema = schema
        self.repair = repair

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Decode (fence stripped), repair if allowed, then validate against the schema."""
        data, error = _decode(text)
        fixed: str | None = None
        if error is not None and self.repair:
            extracted = _extract(text)
            if extracted is not None:
                data, fixed = extracted, json.dumps(extracted, ensure_ascii=False)
        if data is None and (error is not None and fixed is None):
            return Outcome(passed=False, reason=error)
        if self.schema is not None:
            from aiapp.prompts._schema import schema_errors

            problems = schema_errors(data, self.schema)
            if problems:
                return Outcome(passed=False, reason="does not match the schema: " + "; ".join(problems))
        if fixed is not None:
            return Outcome(passed=False, reason=f"{error}; JSON extracted from the reply", fixed=fixed)
        return Outcome(passed=True)

    def reask_message(self, outcome: Outcome) -> str:
        """The repair request sent back to the model."""
        return (
            f"Your previous reply could not be used: {outcome.reason}\n"
            "Reply again with only the corrected JSON value, no explanation and no code fence."
        )


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*")
_CONTEXT_TAG = re.compile(r"<context>(.*?)</context>", re.DOTALL | re.IGNORECASE)
_STOP_WORDS = (
    "a an the and or but if then else of to in on at by for with from as is are was were be been being it its "
    "this that these those there here i you he she we they me him her us them my your his our their what which "
    "who whom whose when where why how not no yes do does did done can could should would may might must will "
    "shall have has had also just so than too very into over under about after before such only own same more "
    "most other some any each all both few"
)
_STOP = frozenset(_STOP_WORDS.split())


def split_sentences(text: str) -> list[str]:
    """Split text into sentences (and lines), dropping empty pieces."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _content(text: str) -> set[str]:
    out = set()
    for token in _TOKEN.findall(text.lower()):
        if token in _STOP or len(token) < 2:
            continue
        out.add(token[:-1] if len(token) > 4 and token.endswith("s") else token)
    return out


def context_documents(context: GuardContext) -> list[str]:
    """The documents to ground in: ``context.documents``, else ``<context>`` blocks in the messages."""
    if context.documents:
        return list(context.documents)
    found: list[str] = []
    for message in context.messages:
        found.extend(m.strip() for m in _CONTEXT_TAG.findall(message.content))
    return found


@register_guard("grounding")
class GroundingGuard(Guard):
    """Flags answer sentences the retrieved context does not support.

    A sentence is supported when enough of its content words appear in the context (lexical
    recall ``>= min_overlap``), or — with ``embeddings`` — when its MiniLM embedding is close to
    a context sentence (cosine ``>= min_similarity``). Sentences with fewer than ``min_words``
    content words ("Sure!", "I hope this helps.") are not judged. With no context, it passes.

    Args:
        min_overlap: Share of a sentence's content words that must occur in the context.
        embeddings: Also accept sentences close in embedding space (loads MiniLM).
        min_similarity: Cosine similarity for ``embeddings``.
        max_unsupported: Share of judged sentences allowed to be unsupported.
        min_words: Content words a sentence needs to be judged.
        embedder: The embedder for ``embeddings`` (default: the local MiniLM).
        action: ``flag`` (default), ``fix`` (drop unsupported sentences), ``reask``, ``block``, ``fallback``.
        name: Name shown in verdicts.
    """

    kind = "grounding"
    default_action = "flag"
    actions = frozenset({"flag", "fix", "reask", "block", "fallback"})
    stages = frozenset({"output"})

    def __init__(
        self,
        *,
        min_overlap: float = 0.5,
        embeddings: bool = False,
        min_similarity: float = 0.7,
        max_unsupported: float = 0.0,
        min_words: int = 3,
        embedder: Embedder | None = None,
        action: Action | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(action=action, name=name)
        self.min_overlap = min_overlap
        self.embeddings = embeddings
        self.min_similarity = min_similarity
        self.max_unsupported = max_unsupported
        self.min_words = min_words
        self.heavy = embeddings
        self._embedder = embedder
        self._lock = threading.Lock()

    def _embed(self, texts: Sequence[str]) -> Any:
        with self._lock:
            if self._embedder is None:
                from aiapp.gateway.embedders import build_embedder

                self._embedder = build_embedder()
            embedder = self._embedder
        return embedder.embed(texts)

    def evaluate(self, text: str, context: GuardContext) -> Outcome:
        """Judge each sentence of the answer against the context."""
        documents = context_documents(context)
        if not documents:
            return Outcome(passed=True, details={"skipped": "no context"})
        vocabulary: set[str] = set()
        for doc in documents:
            vocabulary |= _content(doc)
        sentences = split_sentences(text)
        judged: list[int] = []
        unsupported: list[int] = []
        overlaps: dict[int, float] = {}
        for i, sentence in enumerate(sentences):
            words = _content(sentence)
            if len(words) < self.min_words:
                continue
            judged.append(i)
            overlaps[i] = len(words & vocabulary) / len(words)
            if overlaps[i] < self.min_overlap:
                unsupported.append(i)
        if unsupported and self.embeddings:
            context_sentences = [s for doc in documents for s in split_sentences(doc)]
            if context_sentences:
                vectors = self._embed([sentences[i] for i in unsupported] + context_sentences)
                queries, corpus = vectors[: len(unsupported)], vectors[len(unsupported) :]
                best = np.max(queries @ corpus.T, axis=1)
                unsupported = [
                    i for i, sim in zip(unsupported, best, strict=True) if sim < self.min_similarity
                ]
        supported_share = 1.0 - len(unsupported) / len(judged) if judged else 1.0
        details = {"sentences": len(sentences), "judged": len(judged), "unsupported": unsupported}
        if not judged or len(unsupported) / len(judged) <= self.max_unsupported:
            return Outcome(passed=True, score=supported_share, details=details)
        previews = "; ".join(repr(sentences[i][:48]) for i in unsupported[:3])
        kept = [s for i, s in enumerate(sentences) if i not in set(unsupported)]
        return Outcome(
            passed=False,
            reason=f"{len(unsupported)} of {len(judged)} sentences unsupported by the context: {previews}",
            score=supported_share,
            fixed=" ".join(kept) if kept else None,
            details=details,
        )
