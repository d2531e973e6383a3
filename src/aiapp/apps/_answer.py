"""What a RAG app returns (:class:`Answer`, :class:`Citation`) and how sources enter the prompt.

Context format, which every shipped prompt wraps in ``<context> ... </context>`` and which
``local/extractive`` reads::

    [1] corpora/ollama/faq.mdx
    <the chunk's text>

    [2] corpora/ollama/gpu.mdx
    <the chunk's text>

Answers cite sources as ``[n]`` (also ``[1, 2]`` or ``[1][2]``); :func:`cited_numbers` reads them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aiapp.gateway import iter_sync
from aiapp.types import Hit, Usage

__all__ = ["Answer", "AnswerStream", "Citation", "cited_numbers", "render_context", "strip_citations"]

_CITATION_RE = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_DELIMITER_RE = re.compile(r"<(/?\s*context\s*)>", re.I)


class Citation(BaseModel):
    """One source given to the model, numbered as the prompt numbered it.

    Attributes:
        n: The ``[n]`` number in the prompt and the answer.
        source: The document's path (or id).
        chunk_id: The chunk's stable id.
        score: The retriever's score for it.
        title: The document's title, when known.
        text: The chunk's text as given to the model.
    """

    model_config = ConfigDict(extra="forbid")

    n: int
    source: str
    chunk_id: str = ""
    score: float = 0.0
    title: str | None = None
    text: str = ""


class Answer(BaseModel):
    """A RAG app's reply.

    Attributes:
        question: The question as asked (before any input guard).
        text: The answer (after any output guard), with ``[n]`` citation markers.
        citations: The sources the answer cites, in order of first citation.
        sources: Every source given to the model, numbered as in the prompt.
        hits: The retrieved hits behind ``sources`` (for evals; left out of JSON dumps).
        usage: Tokens and cost of the model call.
        latency_ms: Time from the question to the answer, retrieval included.
        trace_id: The trace of the whole request (retrieval and model call nest under it).
        prompt: The prompt version used (``name@vN``).
        prompt_hash: That version's content hash.
        route: The gateway route called.
        model: The deployment that answered, when known.
    """

    model_config = ConfigDict(extra="forbid")

    question: str
    text: str
    citations: list[Citation] = Field(default_factory=list)
    sources: list[Citation] = Field(default_factory=list)
    hits: list[Hit] = Field(default_factory=list, exclude=True)
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float = 0.0
    trace_id: str | None = None
    prompt: str | None = None
    prompt_hash: str | None = None
    route: str | None = None
    model: str | None = None

    @property
    def cost_usd(self) -> float | None:
        """What the model call cost (``None`` when no price is known)."""
        return self.usage.cost_usd

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``aiapp ask --json``): the fields plus ``cost_usd``."""
        data = self.model_dump(mode="json")
        data["cost_usd"] = self.cost_usd
        return data


class AnswerStream:
    """Text deltas of a streamed answer; :attr:`answer` is set once iteration finishes.

    Iterate it with ``for`` (sync code) or ``async for`` (async code), once.

    Example:
        >>> stream = app.stream("How do I ...?")
        >>> for delta in stream:
        ...     print(delta, end="")
        >>> stream.answer.citations
    """

    def __init__(self, run: Callable[[AnswerStream], AsyncIterator[str]]) -> None:
        self._run = run
        self.answer: Answer | None = None
        self._started = False

    def __aiter__(self) -> AsyncIterator[str]:
        if self._started:
            raise RuntimeError("an AnswerStream can be iterated once")
        self._started = True
        return self._run(self)

    def __iter__(self) -> Iterator[str]:
        return iter_sync(self.__aiter__())

    def text(self) -> str:
        """Consume the stream (if not yet consumed) and return the whole answer text."""
        if not self._started:
            for _ in self:
                pass
        return self._final_text()

    async def atext(self) -> str:
        """Async :meth:`text`."""
        if not self._started:
            async for _ in self:
                pass
        return self._final_text()

    def _final_text(self) -> str:
        if self.answer is None:
            raise RuntimeError("the stream ended without an answer")
        return self.answer.text


def render_context(hits: Sequence[Hit], *, max_chars: int) -> tuple[str, list[Citation]]:
    """Number the hits as sources and render them for the prompt's ``context`` variable.

    Hits are taken best first until ``max_chars`` is reached (the first is always kept, cut to fit).
    ``<context>`` tags inside a chunk are neutralised so a document cannot close the block early.

    Returns:
        The context text and the numbered sources it contains.
    """
    blocks: list[str] = []
    sources: list[Citation] = []
    used = 0
    for hit in hits:
        text = _DELIMITER_RE.sub(r"&lt;\1&gt;", hit.text.strip())
        n = len(sources) + 1
        header = f"[{n}] {hit.source or hit.doc_id or hit.chunk_id or 'unknown'}"
        room = max_chars - used - len(header) - 2
        if room < len(text):
            if sources:
                break
            text = text[: max(room, 0)]
        block = f"{header}\n{text}"
        blocks.append(block)
        used += len(block) + 2
        sources.append(
            Citation(
                n=n, source=hit.source, chunk_id=hit.chunk_id, score=hit.score, title=hit.title, text=text
            )
        )
    return "\n\n".join(blocks), sources


def cited_numbers(text: str) -> list[int]:
    """The ``[n]`` numbers ``text`` cites, in order of first citation."""
    seen: dict[int, None] = {}
    for match in _CITATION_RE.finditer(text):
        for part in match.group(1).split(","):
            seen.setdefault(int(part), None)
    return list(seen)


def strip_citations(text: str) -> str:
    """``text`` without ``[n]`` markers (for conversation history, where old numbers mean nothing)."""
    return re.sub(r"[ \t]*" + _CITATION_RE.pattern, "", text)
