"""``local/extractive``: the offline baseline model that every real LLM must beat.

It answers a question by *selecting* the sentences of the supplied context that best support it,
never by generating text, so it cannot hallucinate and it says so when the context has no answer.

Input protocol (what the RAG layer and prompt files render):

* **Context** is the text inside ``<context> ... </context>`` tags anywhere in the messages (system or
  user); several blocks are concatenated. Only the first ``max_context_chars`` characters are read.
* **Question** is the last user message with its context blocks removed. A ``<question>...</question>``
  tag wins; otherwise, when the message has a ``Question:`` line, the text after the last one is used.
* **Sources** may be numbered: a line starting ``[n]`` opens source *n* (the rest of the line is a
  header such as ``[1] docs/faq.md`` or ``[1] (source: docs/faq.md)``, or the first line of text) and
  the text up to the next marker belongs to it. Answers then cite ``[n]`` after each sentence.

Scoring is lexical: BM25 over the context's sentences (IDF computed on those sentences) of normalized,
stemmed question terms, plus bonuses for question terms in the sentence's section heading, for numbers
when the question asks "how many"/"when", and for neighbouring the best sentence. A sentence is
returned only when it covers enough of the question's IDF-weighted terms and scores close enough to
the best one. A question-bigram bonus was tried and dropped: it favoured sentences that merely name the
topic ("Tar Heel", "cobalt-60") over those that answer, on ClapNQ and on the Ollama FAQ alike.
``benchmarks/local_baseline.py`` measures the model; its report is the reference for these choices.
When the local MiniLM is installed, that lexical score gates whether the context answers, and
``_extractive.choose`` picks the sentences by meaning as well as words (see that module).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from aiapp.errors import InputError
from aiapp.gateway._model import Model, ModelInfo
from aiapp.gateway.providers._extractive import MeaningScorer, choose
from aiapp.types import CallOptions, Completion, FinishReason, Message, Usage

__all__ = ["MODEL_NAME", "NO_ANSWER", "NO_CONTEXT", "ExtractiveAnswer", "ExtractiveModel", "count_tokens"]

MODEL_NAME = "local/extractive"
NO_ANSWER = "I could not find an answer to that in the provided context."
NO_CONTEXT = "No context was provided, so I cannot answer from documents."

# Tuned on the first half of ClapNQ dev (answerable + unanswerable + mismatched contexts); see benchmarks/.
_MIN_COVERAGE = 0.2  # share of the question's IDF-weighted terms the best sentence must contain
_MIN_COVERAGE_EXTRA = 0.1  # the same, for every further sentence
_MIN_COVERAGE_CODE = 0.5  # the same, for a code line that nothing introduces
_RELATIVE = 0.35  # further sentences must score at least this share of the best
_NEIGHBOUR_BONUS = 0.2  # share of the best score added to the sentences next to it
_HEADING_WEIGHT = 0.5  # weight of question terms found in the sentence's section heading
_NUMBER_BONUS = 1.15  # score factor for sentences with a number when the question asks for one
_K1, _B = 1.2, 0.75

_CONTEXT_RE = re.compile(r"<context>(.*?)(?:</context>|\Z)", re.S | re.I)
_QUESTION_TAG_RE = re.compile(r"<question>(.*?)</question>", re.S | re.I)
_QUESTION_LINE_RE = re.compile(r"^[ \t*_#>]*question[*_]*[ \t]*:", re.I | re.M)
_ANSWER_LINE_RE = re.compile(r"^[ \t*_#>]*answer[*_]*[ \t]*:", re.I | re.M)
_SOURCE_RE = re.compile(r"^\s*\[(\d{1,4})\](?![:(])\s*(.*)$")
_SOURCE_NOTE_RE = re.compile(r"^\((?:source|src|from|file|path)\s*:[^)]*\)\s*", re.I)
_PATHLIKE_RE = re.compile(r"^(?:https?://\S+|[\w.~@%+-]*[/\\][\w./\\~@%+#-]*|[\w.-]+\.[A-Za-z]{1,5})$")
_HEADING_RE = re.compile(r"^#{1,6}\s+(.*?)\s*#*$")
_LIST_RE = re.compile(r"^(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_TAG_LINE_RE = re.compile(r"^</?[A-Za-z][\w.-]*(?:\s[^<>]*)?/?>$")
_JSX_TAG_RE = re.compile(r"</?[A-Z][\w.]*(?:\s[^<>]*)?/?>")
_BOUNDARY_RE = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[\"'“‘(\[`*_]*[A-Z0-9])")
_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)\s]*\)")
_WORD_RE = re.compile(r"[^\W_]+")
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_NUMBER_RE = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|hundred|thousand|million|billion|january"
    r"|february|march|april|may|june|july|august|september|october|november|december|century|decade)\b",
    re.I,
)
_NUMERIC_QUESTION_RE = re.compile(
    r"\b(?:how (?:many|much|long|old|far|big|large|often|tall|high|fast)|when|what (?:year|date|time|age)"
    r"|which year|what percentage)\b",
    re.I,
)

# fmt: off
_ABBREVIATIONS = frozenset((
    "e.g.", "i.e.", "cf.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "sr.", "jr.", "st.", "no.", "nos.",
    "fig.", "figs.", "approx.", "inc.", "ltd.", "co.", "corp.", "dept.", "est.", "al.", "ca.", "vol.", "pp.",
    "p.", "jan.", "feb.", "mar.", "apr.", "jun.", "jul.", "aug.", "sep.", "sept.", "oct.", "nov.", "dec.",
))
# A small English stopword list: function words and question words. Content words such as "answer" stay.
_STOPWORDS = frozenset((
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "aren",
    "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can",
    "cannot", "could", "couldn", "d", "did", "didn", "do", "does", "doesn", "doing", "don", "down", "during",
    "each", "few", "for", "from", "further", "get", "got", "had", "has", "have", "having", "he", "her", "here",
    "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "isn", "it", "its",
    "itself", "just", "let", "ll", "m", "me", "more", "most", "my", "myself", "no", "nor", "not", "of", "off",
    "on", "once", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own", "re",
    "s", "same", "shall", "she", "should", "so", "some", "such", "t", "than", "that", "the", "their",
    "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to",
    "too", "under", "until", "up", "ve", "very", "was", "wasn", "we", "were", "what", "when", "where",
    "which", "while", "who", "whom", "whose", "why", "will", "with", "won", "would", "you", "your", "yours",
    "yourself", "yourselves",
))
# fmt: on


@functools.lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    """Strip common English suffixes so that "configure", "configured" and "configuration" meet.

    A tiny Porter-like stemmer rather than nltk: nltk's stemmers are slower, and its tokenizers need a
    data download, which breaks the offline, dependency-light promise of this model. Consistency matters
    more here than linguistic correctness: question and context go through the same function.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif (
        word.endswith("s") and not word.endswith(("ss", "is")) and not (word.endswith("us") and len(word) > 4)
    ):
        word = word[:-1]
    for suffix in ("ational", "ation", "ition", "ments", "ment", "ness", "ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    if word.endswith("y") and len(word) > 3:
        word = word[:-1] + "i"
    return word


def _terms(text: str) -> list[str]:
    """Lowercased, stemmed content terms of ``text`` (stopwords and one-letter words dropped)."""
    return [
        _stem(word)
        for word in _WORD_RE.findall(text.lower())
        if word not in _STOPWORDS and (len(word) > 1 or word.isdigit())
    ]


def count_tokens(text: str) -> int:
    """Count tokens with a simple word/punctuation tokenizer (an estimate, not a BPE count).

    Args:
        text: Any text.

    Returns:
        The number of word and punctuation tokens.
    """
    return len(_TOKEN_RE.findall(text))


@dataclass(frozen=True)
class _Sentence:
    text: str
    source: int | None
    position: int
    terms: tuple[str, ...]
    heading_terms: frozenset[str]
    candidate: bool  # may be returned as (part of) an answer
    code: bool  # a line of a fenced code block
    heading: str = ""  # the section heading's text (read with the sentence when scoring meaning)


@dataclass(frozen=True)
class ExtractiveAnswer:
    """What :meth:`ExtractiveModel.extract` found.

    Attributes:
        text: The answer text (sentences with ``[n]`` markers), :data:`NO_ANSWER` or :data:`NO_CONTEXT`.
        sources: The source numbers cited, in order of first citation.
        supported: Whether the context supported an answer.
        sentences: The selected sentences without markers, in context order.
    """

    text: str
    sources: tuple[int, ...]
    supported: bool
    sentences: tuple[str, ...] = ()


class ExtractiveModel(Model):
    """Offline extractive QA baseline: returns the context sentences that best answer the question.

    Deterministic; a few milliseconds for a few KB of context, plus one MiniLM (ONNX) embedding of
    its sentences when ``semantic`` is on, which runs off the event loop. Tool specs in
    ``options.tools`` are ignored (``info.supports_tools`` is false, so agents use a text protocol).
    ``options.response_format`` asking for JSON yields ``{"answer", "sources", "supported"}`` whatever
    the schema. ``options.stop`` and ``options.max_tokens`` cut plain-text answers like a real model's.

    Args:
        max_sentences: Most sentences per answer; ``options.extra["max_sentences"]`` overrides it per call.
        max_context_chars: Only this many leading characters of the context are read; the rest is
            ignored silently, which keeps latency bounded on oversized prompts.
        semantic: Also rank sentences by meaning (the local MiniLM; see ``_extractive``).
        embedder: The embedder for that (default: the ONNX MiniLM, loaded on first use).
    """

    name = MODEL_NAME
    info = ModelInfo(supports_tools=False, supports_streaming=True, supports_json=True)

    def __init__(
        self,
        *,
        max_sentences: int = 3,
        max_context_chars: int = 200_000,
        semantic: bool = True,
        embedder: object | None = None,
    ) -> None:
        self.max_sentences = _check_positive("max_sentences", max_sentences)
        self.max_context_chars = _check_positive("max_context_chars", max_context_chars)
        self._meaning = MeaningScorer(embedder, enabled=semantic)

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Answer the last user question from the ``<context>`` in ``messages``.

        The work runs in a worker thread when sentences are chosen by meaning (an embedding
        call, milliseconds of CPU that must not stall other calls on the loop), inline otherwise.

        Args:
            messages: The conversation; see the module docstring for the protocol.
            options: Call options; ``extra["max_sentences"]``, ``response_format``, ``stop`` and
                ``max_tokens`` are honoured, the rest ignored.

        Returns:
            The answer as a completion with token usage, ``cost_usd=0.0`` and measured latency.

        Raises:
            InputError: ``extra["max_sentences"]`` is not a positive integer.
        """
        if self._meaning.enabled:
            return await asyncio.to_thread(self._answer, messages, options)
        return self._answer(messages, options)

    def _answer(self, messages: Sequence[Message], options: CallOptions | None) -> Completion:
        started = time.perf_counter()
        opts = options or CallOptions()
        max_sentences = _check_positive("max_sentences", opts.extra.get("max_sentences", self.max_sentences))
        context = "\n".join(m for msg in messages for m in _CONTEXT_RE.findall(msg.content))
        answer = self.extract(_question(messages), context, max_sentences=max_sentences)
        finish: FinishReason = "stop"
        fmt = opts.response_format
        if fmt is not None and fmt.type in ("json_object", "json_schema"):
            payload = {"answer": answer.text, "sources": list(answer.sources), "supported": answer.supported}
            text = json.dumps(payload, ensure_ascii=False)
        else:
            text, finish = _apply_limits(answer.text, opts)
        usage = Usage(
            input_tokens=sum(count_tokens(m.content) for m in messages),
            output_tokens=count_tokens(text),
            cost_usd=0.0,
        )
        return Completion(
            text=text,
            finish_reason=finish,
            model=MODEL_NAME,
            usage=usage,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def extract(self, question: str, context: str, *, max_sentences: int | None = None) -> ExtractiveAnswer:
        """Select the context sentences that best answer ``question``.

        Args:
            question: The question text (no tags).
            context: The context text, plain or with ``[n]`` source markers.
            max_sentences: Most sentences to return; defaults to the model's setting.

        Returns:
            The selected sentences with their sources, or a no-answer/no-context result.
        """
        limit = (
            self.max_sentences if max_sentences is None else _check_positive("max_sentences", max_sentences)
        )
        context = context[: self.max_context_chars]
        sentences = _split_context(context)
        if not sentences:
            return ExtractiveAnswer(NO_CONTEXT, (), False)
        chosen = _select(_terms(question), question, sentences, limit, self._meaning(question, sentences))
        if not chosen:
            return ExtractiveAnswer(NO_ANSWER, (), False)
        parts: list[str] = []
        sources: list[int] = []
        for i, sent in enumerate(chosen):
            parts.append(sent.text)
            nxt = chosen[i + 1].source if i + 1 < len(chosen) else None
            if sent.source is not None and sent.source != nxt:  # dedupe consecutive markers
                parts[-1] += f" [{sent.source}]"
                if sent.source not in sources:
                    sources.append(sent.source)
        return ExtractiveAnswer(" ".join(parts), tuple(sources), True, tuple(s.text for s in chosen))


def _check_positive(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{field} must be a positive integer, got {value!r}")
    return value


def _question(messages: Sequence[Message]) -> str:
    """The last user message without context blocks, narrowed to its ``<question>`` or ``Question:``."""
    for msg in reversed(messages):
        if msg.role != "user":
            continue
        text = _CONTEXT_RE.sub(" ", msg.content)
        tagged = _QUESTION_TAG_RE.findall(text)
        if tagged:
            return str(tagged[-1]).strip()
        labels = list(_QUESTION_LINE_RE.finditer(text))
        if labels:
            text = text[labels[-1].end() :]
            return _ANSWER_LINE_RE.split(text, maxsplit=1)[0].strip()  # drop a trailing "Answer:" cue
        return text.strip()
    return ""


def _apply_limits(text: str, opts: CallOptions) -> tuple[str, FinishReason]:
    """Cut plain text at the first stop sequence and at ``max_tokens`` tokens."""
    finish: FinishReason = "stop"
    for stop in opts.stop or ():
        if stop and stop in text:
            text = text[: text.index(stop)]
    if opts.max_tokens is not None:
        tokens = list(_TOKEN_RE.finditer(text))
        if len(tokens) > opts.max_tokens:
            text, finish = text[: tokens[opts.max_tokens - 1].end()], "length"
    return text, finish


def _split_context(context: str) -> list[_Sentence]:
    """Split a context into sentences, keeping each one's source number and section heading."""
    sentences: list[_Sentence] = []
    source: int | None = None
    lines: list[str] = []
    heading = ""
    for line in context.splitlines():
        marker = _SOURCE_RE.match(line)
        if marker is None:
            lines.append(line)
            continue
        _segment(lines, source, heading, sentences)
        source, rest, heading, lines = int(marker.group(1)), marker.group(2).strip(), "", []
        rest = _SOURCE_NOTE_RE.sub("", rest)
        first, _, tail = rest.partition(" ")
        if not _PATHLIKE_RE.match(first):
            lines.append(rest)  # "[1] Ollama listens on ...": the source's text starts on the marker line
        elif re.search(r"[.!?]$", tail.strip()):
            lines.append(tail)
        else:
            heading = tail.strip(" -—–|§:")  # "[1] docs/faq.md — Section": a header line
    _segment(lines, source, heading, sentences)
    return sentences


def _segment(lines: list[str], source: int | None, heading: str, out: list[_Sentence]) -> None:
    """Append the sentences of one source's lines to ``out`` (markdown-aware)."""
    paragraph: list[str] = []
    in_fence = False
    heading_terms = frozenset(_terms(heading))
    section = [heading]

    def add(text: str, *, code: bool) -> None:
        text = " ".join(text.split())
        terms = _terms(text if code else _LINK_RE.sub(r"\1", text))  # link targets are not content
        if terms:  # very short prose fragments ("Belgian") are kept for IDF but never returned
            candidate = code or len(_WORD_RE.findall(text)) >= 3
            out.append(
                _Sentence(text, source, len(out), tuple(terms), heading_terms, candidate, code, section[0])
            )

    def flush() -> None:
        text = _JSX_TAG_RE.sub(" ", " ".join(paragraph)).strip()
        paragraph.clear()
        start = 0
        for match in _BOUNDARY_RE.finditer(text):
            word = text[: match.start() + 1].rsplit(None, 1)[-1].lstrip("(\"'[*_`").lower()
            if word in _ABBREVIATIONS or re.fullmatch(r"(?:[a-z]\.)+", word):
                continue  # "e.g.", "Dr.", initials and "U.S." do not end a sentence
            add(text[start : match.end()], code=False)
            start = match.end()
        if text[start:].strip():
            add(text[start:], code=False)

    for raw in lines:
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            flush()
            in_fence = not in_fence
        elif in_fence:
            if line:
                add(line, code=True)
        elif not line or _TAG_LINE_RE.match(line) or re.fullmatch(r"[-=*_|: ]{3,}", line):
            flush()
        elif heading_match := _HEADING_RE.match(line):
            flush()  # headings are not answers, but their terms count for the sentences below them
            heading_terms = frozenset(_terms(heading_match.group(1)))
            section[0] = heading_match.group(1)
        elif list_item := _LIST_RE.match(line):
            flush()
            paragraph.append(list_item.group(1))
        elif line.startswith("|"):
            flush()
            add(" ".join(cell.strip() for cell in line.strip("|").split("|")), code=False)
        else:
            paragraph.append(line.lstrip("> "))
    flush()


def _select(
    question_terms: list[str],
    question: str,
    sentences: list[_Sentence],
    limit: int,
    meaning: list[float] | None = None,
) -> list[_Sentence]:
    """Score sentences against the question and return the supported ones in context order.

    With ``meaning`` (each sentence's cosine to the question), the lexical gate below still decides
    whether the context answers; :func:`._extractive.choose` then picks the sentences.
    """
    wanted = list(dict.fromkeys(question_terms))
    if not wanted:
        return []
    n = len(sentences)
    df: Counter[str] = Counter()
    for sent in sentences:
        df.update(set(sent.terms))
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in wanted}
    total_weight = sum(idf.values())
    avg_len = sum(len(s.terms) for s in sentences) / n
    numeric = bool(_NUMERIC_QUESTION_RE.search(question))

    scores: list[float] = []
    coverage: list[float] = []
    for sent in sentences:
        tf = Counter(sent.terms)
        norm = _K1 * (1 - _B + _B * len(sent.terms) / avg_len)
        score = sum(idf[t] * tf[t] * (_K1 + 1) / (tf[t] + norm) for t in wanted if t in tf)
        score += _HEADING_WEIGHT * sum(idf[t] for t in wanted if t in sent.heading_terms and t not in tf)
        covered = sum(idf[t] for t in wanted if t in tf or t in sent.heading_terms)
        if numeric and _NUMBER_RE.search(sent.text):
            score *= _NUMBER_BONUS
        scores.append(score if sent.candidate else 0.0)
        coverage.append(covered / total_weight)

    best = max(range(n), key=lambda i: (scores[i], -i))
    if scores[best] <= 0 or coverage[best] < _MIN_COVERAGE:
        return []
    if meaning is not None:
        return [sentences[i] for i in choose(sentences, scores, coverage, meaning, limit, numeric=numeric)]
    for i in (best - 1, best + 1):
        if 0 <= i < n and sentences[i].source == sentences[best].source and scores[i] > 0:
            scores[i] += _NEIGHBOUR_BONUS * scores[best]
    chosen = [best]
    follow = best + 1
    if (
        sentences[best].text.endswith(":")
        and follow < n
        and sentences[follow].source == sentences[best].source
    ):
        chosen.append(follow)  # "set the variable:" introduces the code line or list item after it
    ranked = sorted(range(n), key=lambda i: (-scores[i], i))
    for i in ranked:
        if len(chosen) >= limit or scores[i] < _RELATIVE * scores[best]:
            break
        if i not in chosen and coverage[i] >= (
            _MIN_COVERAGE_CODE if sentences[i].code else _MIN_COVERAGE_EXTRA
        ):
            chosen.append(i)
    return [sentences[i] for i in sorted(chosen[:limit])]
