"""Synthetic test sets: question/answer pairs written by a route from sampled corpus chunks.

``aiapp eval synth CORPUS --n 50 --route R`` (or :func:`synthesize`):

1. chunks the corpus exactly as its index does (same chunker, sizes and tokenizer, so the chunk ids
   kept as gold are the ids the index returns) and samples chunks, seeded;
2. asks the route for one pair per chunk (two chunks for ``multi-hop``) with structured output (a
   JSON schema); a reply that is not valid JSON for the schema is re-asked, then skipped and
   counted by reason — never a crash;
3. removes near-duplicate questions (cosine similarity of their embeddings above a threshold);
4. drops pairs whose answer the source chunks do not support: the ``faithfulness`` scorer, lexical
   (``check="grounding"``, offline) or judged by the same route (``check="route"``);
5. generates more in rounds until ``n`` pairs survive or the rounds run out, and raises
   :class:`~aiapp.errors.InputError` saying how many were generated, unusable, duplicates and
   unsupported when fewer than ``min_keep`` survive: never an empty set.

The result is a dataset (JSONL; gold chunk ids in ``gold_ids``, gold sections ``path#Heading`` in
``sections``) and a review file: one line per pair with ``verdict: pending`` for a person to set to
``accept`` or ``reject``; :func:`apply_review` then writes the reviewed dataset. Review lines carry
the fields of a review-queue item (``case_id``, ``question``, ``answer``, ``context``, ``reference``).

:class:`~aiapp.evals._synth_template.HeadingQuestionWriter` is an offline route for it: it turns
a chunk's section heading into the question and the section's first sentences into the answer (a
template, not an LLM: it writes ``factual`` and ``multi-hop`` pairs only).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiapp._files import atomic_write
from aiapp.errors import InputError, UserError
from aiapp.evals._score import Case, Output, Sample
from aiapp.evals._synth_template import prose
from aiapp.types import CallOptions, Hit, Message, ResponseFormat

if TYPE_CHECKING:
    from aiapp.config import Settings
    from aiapp.gateway import Gateway
    from aiapp.gateway.embedders import Embedder

SynthKind = Literal["factual", "howto", "multi-hop", "unanswerable"]
KINDS: tuple[str, ...] = ("factual", "howto", "multi-hop", "unanswerable")
#: What an ``unanswerable`` pair's reference answer is.
NO_ANSWER = ""


class QAPair(BaseModel):
    """One generated pair, as the route must return it."""

    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1)
    answer: str = ""


class QAPairs(BaseModel):
    """The structured-output schema the route answers with."""

    model_config = ConfigDict(extra="ignore")

    pairs: list[QAPair]


@dataclass(frozen=True)
class SynthChunk:
    """A corpus chunk a pair can be grounded in."""

    chunk_id: str
    source: str
    text: str
    headings: tuple[str, ...] = ()
    ordinal: int = 0

    @property
    def section(self) -> str:
        """``path#Heading`` of the section the chunk starts in (``path`` when it has no heading)."""
        if self.headings:
            return f"{self.source}#{self.headings[-1]}"
        inline = re.search(r"^#{1,6}\s+(.+?)\s*$", self.text, re.M)
        return f"{self.source}#{inline.group(1)}" if inline else self.source


@dataclass
class SynthReport:
    """What happened to every pair on its way into the set."""

    requested: int
    calls: int = 0
    generated: int = 0
    unusable: dict[str, int] = field(default_factory=dict)
    reasked: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    unsupported: int = 0
    unsupported_reasons: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    rounds: int = 0
    cost_usd: float | None = 0.0

    def count(self, bucket: dict[str, int], reason: str) -> None:
        """Count one pair under ``reason``."""
        bucket[reason] = bucket.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dict(self.__dict__)

    def explain(self) -> str:
        """One sentence with every count."""
        unusable = sum(self.unusable.values())
        why = ", ".join(f"{r}: {c}" for r, c in sorted(self.unusable.items(), key=lambda kv: -kv[1]))
        unsup = ", ".join(
            f"{r}: {c}" for r, c in sorted(self.unsupported_reasons.items(), key=lambda kv: -kv[1])[:3]
        )
        again = sum(self.reasked.values())
        return (
            f"{self.calls} generation calls in {self.rounds} rounds ({again} re-asks); "
            f"{self.generated} pairs generated, "
            f"{unusable} replies unusable{f' ({why})' if why else ''}, {self.duplicates} near-duplicates "
            f"removed, {self.unsupported} not supported by their chunks{f' ({unsup})' if unsup else ''}; "
            f"{self.kept} kept"
        )


@dataclass
class SynthResult:
    """The surviving rows (dataset rows, review lines) and the report."""

    rows: list[dict[str, Any]]
    review: list[dict[str, Any]]
    report: SynthReport


# -- chunks ---------------------------------------------------------------------------------------


def corpus_chunks(
    corpus: str | Path, settings: Settings, *, embedder: Embedder | None = None
) -> list[SynthChunk]:
    """The chunks of a corpus (a name under ``corpora_dir`` or a folder), as its index makes them."""
    from aiapp.retrieval import Chunker, Index, load_corpus, token_counter

    name = Path(corpus).name if Path(str(corpus)).is_dir() else str(corpus)
    index = Index(re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "corpus", settings=settings, embedder=embedder)
    root = Path(corpus) if Path(str(corpus)).is_dir() else index.corpus_dir(str(corpus))
    if not root.is_dir():
        raise InputError(f"{root}: corpus folder does not exist")
    config = index.config
    loaded = load_corpus(
        root,
        include=config.include,
        exclude=config.exclude,
        max_file_mb=config.max_file_mb,
        max_pdf_mb=config.max_pdf_mb,
        follow_links_outside=config.follow_links_outside,
    )
    chunker = Chunker(
        chunk_tokens=config.chunk_tokens,
        chunk_overlap=config.chunk_overlap,
        tokens=token_counter(index.embedder),
    )
    out: list[SynthChunk] = []
    for doc in loaded.documents:
        for chunk in chunker.chunk(doc):
            out.append(
                SynthChunk(chunk.chunk_id, chunk.source, chunk.text, tuple(chunk.headings), chunk.ordinal)
            )
    return out


def _eligible(chunks: Sequence[SynthChunk], min_chars: int) -> list[SynthChunk]:
    return [c for c in chunks if len(prose(c.text)) >= min_chars]


# -- prompts and replies --------------------------------------------------------------------------

SYSTEM = (
    "You write evaluation questions for a documentation assistant, from documentation excerpts. "
    'Reply with JSON only, matching the schema {"pairs": [{"question": string, "answer": string}]}, '
    "with exactly one pair. The question must make sense without seeing the excerpt."
)
_INSTRUCTIONS = {
    "factual": "Write a factual question whose answer is stated in the excerpt; the answer quotes or "
    "closely paraphrases the excerpt in one or two sentences.",
    "howto": "Write a 'How do I ...?' question a user would ask, answered by the steps, setting or "
    "command in the excerpt; the answer gives them in one or two sentences.",
    "multi-hop": "Write one question that needs BOTH excerpts to answer; the answer combines a fact "
    "from each excerpt.",
    "unanswerable": "Write a question on the excerpt's topic that the excerpt does NOT answer; the "
    "answer must be an empty string.",
}


def generation_messages(kind: str, chunks: Sequence[SynthChunk]) -> list[Message]:
    """The request for one pair of ``kind`` grounded in ``chunks``."""
    blocks = "\n\n".join(
        f'<excerpt id="{i}" source="{c.source}" section="{" > ".join(c.headings)}">\n{c.text}\n</excerpt>'
        for i, c in enumerate(chunks, 1)
    )
    return [Message.system(SYSTEM), Message.user(f"{blocks}\n\nKind: {kind}\n{_INSTRUCTIONS[kind]}")]


def parse_reply(text: str) -> QAPair | str:
    """The pair in a reply, or the reason it is unusable."""
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return "reply is not JSON"
    try:
        pairs = QAPairs.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"reply does not match the schema ({'.'.join(str(p) for p in first['loc'])}: {first['msg']})"
    if not pairs.pairs:
        return "reply has no pair"
    pair = pairs.pairs[0]
    if len(pair.question.strip()) < 8:
        return "question too short"
    return pair


# -- the pipeline ---------------------------------------------------------------------------------


@dataclass
class _Draft:
    kind: str
    chunks: tuple[SynthChunk, ...]
    pair: QAPair


def _plan(
    chunks: Sequence[SynthChunk], kinds: Sequence[str], count: int, rng: random.Random, used: set[str]
) -> list[tuple[str, tuple[SynthChunk, ...]]]:
    """``count`` (kind, chunks) requests, preferring chunks not used in an earlier round."""
    fresh = [c for c in chunks if c.chunk_id not in used]
    pool = fresh if len(fresh) >= count else list(chunks)
    order = rng.sample(pool, len(pool))
    by_source: dict[str, list[SynthChunk]] = {}
    for c in chunks:
        by_source.setdefault(c.source, []).append(c)
    out: list[tuple[str, tuple[SynthChunk, ...]]] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        first = order[i % len(order)]
        used.add(first.chunk_id)
        if kind == "multi-hop":
            siblings = [c for c in by_source[first.source] if c.chunk_id != first.chunk_id]
            others = siblings or [c for c in chunks if c.chunk_id != first.chunk_id]
            if not others:
                continue
            second = (
                min(
                    others,
                    key=lambda c: (c.section == first.section, abs(c.ordinal - first.ordinal), c.chunk_id),
                )
                if siblings
                else rng.choice(others)
            )
            out.append((kind, (first, second)))
        else:
            out.append((kind, (first,)))
    return out


async def _generate(
    gateway: Gateway,
    route: str,
    kind: str,
    chunks: tuple[SynthChunk, ...],
    report: SynthReport,
    retries: int,
) -> _Draft | None:
    messages = generation_messages(kind, chunks)
    options = CallOptions(temperature=0, response_format=ResponseFormat.from_model(QAPairs))
    reason = "no reply"
    for attempt in range(retries + 1):
        if attempt:
            report.count(report.reasked, reason)
        report.calls += 1
        try:
            reply = await gateway.acomplete(messages, model=route, options=options)
        except UserError:
            raise  # a bad route or config fails every request alike: say so at once
        except Exception as exc:  # a failed call skips one request, counted; never the whole set
            reason = f"route failed: {type(exc).__name__}"
            continue
        if reply.usage.cost_usd is None:
            report.cost_usd = None
        elif report.cost_usd is not None:
            report.cost_usd += reply.usage.cost_usd
        parsed = parse_reply(reply.text)
        if isinstance(parsed, QAPair):
            report.generated += 1
            return _Draft(kind, chunks, parsed)
        reason = parsed
        if parsed == "reply has no pair":
            break  # the route chose not to write one: asking again will not change that
    report.count(report.unusable, f"{reason} ({kind})" if reason == "reply has no pair" else reason)
    return None


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _dedupe(
    drafts: list[_Draft], kept: list[_Draft], embedder: Embedder | None, threshold: float
) -> tuple[list[_Draft], int]:
    """Drafts whose question is not a near-duplicate of a kept one (or of an earlier draft)."""
    import numpy as np

    seen = {_norm(d.pair.question) for d in kept}
    unique: list[_Draft] = []
    dropped = 0
    for d in drafts:
        key = _norm(d.pair.question)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        unique.append(d)
    if embedder is None or not unique:
        return unique, dropped
    texts = [d.pair.question for d in kept] + [d.pair.question for d in unique]
    raw = np.asarray(embedder.embed(texts, kind="query"), dtype=np.float64)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    vectors = raw / np.where(norms == 0, 1.0, norms)
    chosen = list(range(len(kept)))
    out: list[_Draft] = []
    for offset, draft in enumerate(unique):
        row = len(kept) + offset
        if chosen and float(np.max(vectors[chosen] @ vectors[row])) >= threshold:
            dropped += 1
            continue
        chosen.append(row)
        out.append(draft)
    return out, dropped


async def _supported(drafts: list[_Draft], scorer: Any, minimum: float, report: SynthReport) -> list[_Draft]:
    """Drafts whose answer their chunks support (``unanswerable`` drafts need no support)."""
    out: list[_Draft] = []
    for d in drafts:
        if d.kind == "unanswerable":
            out.append(d)
            continue
        sample = Sample(
            case=Case(id="synth", input=d.pair.question, expected=d.pair.answer),
            output=Output(
                text=d.pair.answer,
                hits=[Hit(text=c.text, source=c.source, chunk_id=c.chunk_id) for c in d.chunks],
            ),
        )
        score = await scorer.ascore(sample)
        if score.value is None:
            report.unsupported += 1
            report.count(report.unsupported_reasons, score.reason or "unscored")
        elif score.value < minimum:
            report.unsupported += 1
            report.count(report.unsupported_reasons, f"support {score.value:.2f} < {minimum:g}")
        else:
            out.append(d)
    return out


async def asynthesize(
    chunks: Sequence[SynthChunk],
    *,
    gateway: Gateway,
    route: str,
    n: int = 50,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    embedder: Embedder | None = None,
    duplicate_threshold: float = 0.92,
    check: Literal["grounding", "route"] = "grounding",
    min_support: float = 0.8,
    min_keep: int | None = None,
    retries: int = 1,
    rounds: int = 3,
    concurrency: int = 8,
    min_chars: int = 80,
) -> SynthResult:
    """Generate, deduplicate and support-check ``n`` pairs (async; sync: :func:`synthesize`).

    Raises:
        InputError: bad arguments, no usable chunks, or fewer than ``min_keep`` (default ``n // 2``,
            at least 1) pairs survived — the message gives every count.
    """
    from aiapp.evals.scorers import build_scorer

    if n < 1:
        raise InputError("--n must be at least 1")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise InputError(f"unknown kinds {unknown or kinds} (choose from {', '.join(KINDS)})")
    usable = _eligible(chunks, min_chars)
    if not usable:
        raise InputError(
            f"none of the {len(chunks)} chunks has {min_chars}+ characters of prose to ask about"
        )
    floor = max(1, n // 2) if min_keep is None else min_keep
    params: dict[str, Any] = (
        {"method": "lexical"} if check == "grounding" else {"method": "judge", "judge": route}
    )
    scorer = build_scorer("faithfulness", params, gateway=gateway, settings=gateway.settings)
    report = SynthReport(requested=n)
    rng = random.Random(seed)
    used: set[str] = set()
    kept: list[_Draft] = []
    limit = asyncio.Semaphore(concurrency)

    async def one(kind: str, group: tuple[SynthChunk, ...]) -> _Draft | None:
        async with limit:
            return await _generate(gateway, route, kind, group, report, retries)

    for _ in range(rounds):
        missing = n - len(kept)
        if missing <= 0:
            break
        report.rounds += 1
        ask = math.ceil(missing * (1.5 if report.rounds == 1 else 2.0))
        plan = _plan(usable, kinds, ask, rng, used)
        drafts = [d for d in await asyncio.gather(*(one(k, g) for k, g in plan)) if d is not None]
        unique, dropped = _dedupe(drafts, kept, embedder, duplicate_threshold)
        report.duplicates += dropped
        kept += await _supported(unique, scorer, min_support, report)
    kept = kept[:n]
    report.kept = len(kept)
    if len(kept) < floor:
        raise InputError(
            f"synthetic set too small: {len(kept)} of {n} pairs survived (at least {floor} needed): "
            f"{report.explain()}"
        )
    return _result(kept, report)


def synthesize(chunks: Sequence[SynthChunk], **kwargs: Any) -> SynthResult:
    """Sync :func:`asynthesize`."""
    from aiapp.gateway import run_sync

    return run_sync(asynthesize(chunks, **kwargs))


def _result(kept: list[_Draft], report: SynthReport) -> SynthResult:
    rows: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []
    for i, d in enumerate(kept, 1):
        case_id = f"synth-{i:03d}"
        answer = NO_ANSWER if d.kind == "unanswerable" else d.pair.answer.strip()
        rows.append(
            {
                "id": case_id,
                "question": d.pair.question.strip(),
                "answer": answer,
                "kind": d.kind,
                "answerable": d.kind != "unanswerable",
                "gold_ids": [c.chunk_id for c in d.chunks],
                "sections": list(dict.fromkeys(c.section for c in d.chunks)),
                "sources": list(dict.fromkeys(c.source for c in d.chunks)),
            }
        )
        review.append(
            {
                "case_id": case_id,
                "verdict": "pending",
                "note": "",
                "kind": d.kind,
                "question": rows[-1]["question"],
                "answer": answer,
                "reference": answer,
                "context": "\n\n".join(f"[{n}] {c.section}\n{c.text}" for n, c in enumerate(d.chunks, 1)),
            }
        )
    return SynthResult(rows, review, report)


# -- files ----------------------------------------------------------------------------------------


def review_path_for(dataset: Path) -> Path:
    """The review file written beside a dataset: ``<name>.review.jsonl``."""
    return dataset.with_name(dataset.name.removesuffix(".jsonl") + ".review.jsonl")


def write_synth(result: SynthResult, path: Path) -> tuple[Path, Path]:
    """Write the dataset and its review file (atomically); returns both paths."""
    review = review_path_for(path)
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.rows))
    atomic_write(review, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.review))
    return path, review


@dataclass
class ReviewOutcome:
    """What a review decided."""

    accepted: list[str]
    rejected: list[str]
    pending: list[str]


def apply_review(dataset: Path, review: Path, out: Path, *, allow_pending: bool = False) -> ReviewOutcome:
    """Write the reviewed dataset: the rows of ``dataset`` whose review ``verdict`` is ``accept``.

    Raises:
        InputError: a malformed review line (file and line named), an unknown verdict, rows still
            pending (unless ``allow_pending``), or no accepted row at all.
    """
    verdicts: dict[str, str] = {}
    for number, line in enumerate(review.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            case_id, verdict = str(item["case_id"]), str(item.get("verdict", "pending")).lower()
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{review}:{number}: not a review line ({exc})") from exc
        if verdict not in ("accept", "reject", "pending"):
            raise InputError(f"{review}:{number}: verdict must be accept, reject or pending, not {verdict!r}")
        verdicts[case_id] = verdict
    rows = [json.loads(line) for line in dataset.read_text(encoding="utf-8").splitlines() if line.strip()]
    outcome = ReviewOutcome(
        accepted=[r["id"] for r in rows if verdicts.get(r["id"]) == "accept"],
        rejected=[r["id"] for r in rows if verdicts.get(r["id"]) == "reject"],
        pending=[r["id"] for r in rows if verdicts.get(r["id"], "pending") == "pending"],
    )
    if outcome.pending and not allow_pending:
        raise InputError(
            f"{review}: {len(outcome.pending)} rows are still pending (first: {outcome.pending[0]})"
        )
    if not outcome.accepted:
        raise InputError(f"{review}: no row was accepted; nothing to write")
    keep = set(outcome.accepted)
    atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if r["id"] in keep))
    return outcome
