"""The flywheel: stored traces (and the feedback and scores on them) back out as data.

``aiapp traces export --as eval|sft|preference`` reads the trace store, keeps the traces a
:class:`TraceFilter` selects, collapses near-duplicate questions, redacts PII and secrets with the
``pii`` and ``secrets`` guards, and writes JSONL:

- ``eval``: one eval case per question, loadable as a suite's dataset with the default field map
  (``id``, ``question``, ``answer``; every other column is case metadata). ``answer`` is the traced
  answer only where users approved it (feedback positive), so it can serve as a reference; it is
  ``null`` otherwise and ``traced_answer`` always holds what the system said. ``context`` lists the
  retrieved passages; ``feedback`` and ``scores`` summarise what is known about the trace.
- ``sft``: OpenAI's chat fine-tuning format, ``{"messages": [system, user, assistant]}``: the
  messages the model was sent and the answer the user saw. Traces with negative feedback are not
  training examples and are skipped (counted in the report).
- ``preference``: ``{"prompt": [...], "chosen": [assistant], "rejected": [assistant]}`` (the
  conversational preference format of TRL's DPO trainer), pairing answers to the same (or a
  near-duplicate) question whose ratings differ by at least ``min_margin``: user feedback where
  there is any, else the mean of the stored online scores; with a pairwise judge
  (``judge_pairwise``), questions without such ratings get their answers judged A/B in both
  orders. ``metadata.method`` says which decided.

How a trace becomes an interaction, and how feedback counts, is in :mod:`aiapp.evals._interactions`.

Near-duplicates: questions equal after case and whitespace folding, or whose embeddings (the
default local MiniLM embedder) have cosine similarity of at least :data:`DEDUP_THRESHOLD`, form one
group; the group keeps its newest rated trace (else its newest) and lists the others in
``duplicates``. 0.9 because, measured with MiniLM: paraphrases and re-asks score 0.96-0.998
("How do I rotate my API key?" / "How can I rotate my API key?" 0.997, "... API keys?" 0.972),
while different questions on the same topic stay at or below 0.72 ("How do I delete my API
key?" / "How do I create an API key?" 0.715, "What is the refund policy?" / "Can I get a refund?"
0.703).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from aiapp.errors import InputError
from aiapp.evals._interactions import Interaction, TraceFilter, load_interactions

if TYPE_CHECKING:
    from aiapp.evals.scorers._judge import PairwiseJudge
    from aiapp.gateway.embedders import Embedder
    from aiapp.tracing import TraceStore

ExportKind = Literal["eval", "sft", "preference"]
EXPORT_KINDS: tuple[ExportKind, ...] = ("eval", "sft", "preference")
#: Cosine similarity at or above which two questions are near-duplicates (see the module docstring).
DEDUP_THRESHOLD = 0.9
# -- near-duplicates and redaction --------------------------------------------------------------


def collapse_near_duplicates(
    items: Sequence[Interaction],
    embedder: Embedder | None,
    *,
    threshold: float = DEDUP_THRESHOLD,
) -> list[list[Interaction]]:
    """Group interactions whose questions are near-duplicates (cosine ≥ ``threshold``), order kept.

    With ``embedder=None`` only questions equal after case and whitespace folding are grouped.
    """
    groups: list[list[Interaction]] = []
    by_text: dict[str, int] = {}
    for item in items:
        key = " ".join(item.question.lower().split())
        if key in by_text:
            groups[by_text[key]].append(item)
            continue
        by_text[key] = len(groups)
        groups.append([item])
    if embedder is None or len(groups) < 2:
        return groups
    import numpy as np

    vectors = embedder.embed([g[0].question for g in groups], kind="query")
    merged: list[int] = []  # representative group index per group
    reps: list[int] = []
    for i in range(len(groups)):
        if reps:
            sims = vectors[reps] @ vectors[i]
            best = int(np.argmax(sims))
            if float(sims[best]) >= threshold:
                merged.append(reps[best])
                continue
        reps.append(i)
        merged.append(i)
    out: dict[int, list[Interaction]] = {}
    for i, target in enumerate(merged):
        out.setdefault(target, []).extend(groups[i])
    return [out[i] for i in sorted(out)]


def pii_redactor() -> Callable[[str], str]:
    """Text with PII and secrets replaced by placeholders, by the ``secrets`` and ``pii`` guards."""
    from aiapp.guardrails import OutputGuards, PIIGuard, SecretsGuard

    stack = OutputGuards([SecretsGuard(action="redact"), PIIGuard(reversible=False, action="redact")])

    def redact(text: str) -> str:
        return stack.check(text, raise_on_block=False).text if text else text

    return redact


#: Identifiers and hashes: never rewritten by redaction (a hex id is not PII, and rows must still join).
_ID_KEYS = frozenset(
    {"id", "trace_id", "chunk_id", "prompt_hash", "duplicates", "chosen_trace_id", "rejected_trace_id"}
)


def scrub(value: Any, redact: Callable[[str], str]) -> Any:
    """Every string inside ``value`` passed through ``redact`` (identifier fields excepted)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [scrub(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: v if k in _ID_KEYS else scrub(v, redact) for k, v in value.items()}
    return value


# -- rows ---------------------------------------------------------------------------------------


def eval_row(item: Interaction) -> dict[str, Any]:
    """One eval case (see the module docstring for the columns)."""
    comments = [f["comment"] for f in item.feedback if f.get("comment")]
    latest: dict[str, float | None] = {}
    for s in item.scores:
        latest[s["name"]] = s["value"] if s["value"] is not None else latest.get(s["name"])
    return {
        "id": f"trace-{item.trace_id}",
        "question": item.question,
        "answer": item.answer if item.sign == "positive" else None,
        "traced_answer": item.answer,
        "context": item.context,
        "feedback": {
            "rating": item.rating,
            "sign": item.sign,
            "count": len(item.feedback),
            "comments": comments,
        },
        "scores": latest,
        "trace_id": item.trace_id,
        "route": item.route,
        "prompt": item.prompt,
        "prompt_hash": item.prompt_hash,
        "model": item.model,
        "started_at": item.started_at,
        "guard_triggered": item.guard_triggered,
        "duplicates": item.duplicates,
    }


_SFT_ROLES = ("system", "user", "assistant")


def _prompt_messages(item: Interaction) -> list[dict[str, str]] | None:
    """The plain chat messages sent to the model (``None`` when they hold tool calls or non-text)."""
    messages = item.messages or [{"role": "user", "content": item.question}]
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] not in _SFT_ROLES or not isinstance(m.get("content"), str) or m.get("tool_calls"):
            return None
        if m["content"].strip():
            out.append({"role": m["role"], "content": m["content"]})
    if not out or out[-1]["role"] != "user":
        return None
    return out


def sft_row(item: Interaction) -> dict[str, Any] | None:
    """``{"messages": [..., {"role": "assistant", ...}]}``, or ``None`` for a tool-call conversation."""
    prompt = _prompt_messages(item)
    if prompt is None:
        return None
    return {"messages": [*prompt, {"role": "assistant", "content": item.answer}]}


def preference_row(
    chosen: Interaction, rejected: Interaction, method: str = "feedback"
) -> dict[str, Any] | None:
    """A TRL-style conversational preference pair, or ``None`` when the prompt is not plain chat."""
    prompt = _prompt_messages(chosen)
    if prompt is None:
        return None
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen.answer}],
        "rejected": [{"role": "assistant", "content": rejected.answer}],
        "metadata": {
            "chosen_trace_id": chosen.trace_id,
            "rejected_trace_id": rejected.trace_id,
            "chosen_rating": _preference_key(chosen),
            "rejected_rating": _preference_key(rejected),
            "method": method,
        },
    }


def _preference_key(item: Interaction) -> float | None:
    rating = item.rating
    return rating if rating is not None else item.mean_score()


# -- exporting ----------------------------------------------------------------------------------


class ExportReport(BaseModel):
    """What an export wrote.

    Attributes:
        kind: ``eval``, ``sft`` or ``preference``.
        path: The file written.
        rows: Rows written.
        traces: Traces the filter selected.
        collapsed: Traces folded into a near-duplicate's row.
        skipped: Why traces were left out, with counts.
        redactions: Strings the PII/secrets redaction changed.
    """

    kind: ExportKind
    path: str
    rows: int = 0
    traces: int = 0
    collapsed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)
    redactions: int = 0


def export_traces(
    store: TraceStore,
    kind: ExportKind,
    out: Path | str,
    *,
    filter: TraceFilter | None = None,
    dedup: bool = True,
    threshold: float = DEDUP_THRESHOLD,
    embedder: Embedder | None = None,
    min_margin: float = 0.5,
    redact: Callable[[str], str] | None = None,
    pairwise: PairwiseJudge | None = None,
) -> ExportReport:
    """Write stored traces as JSONL eval cases, SFT rows or preference pairs.

    Args:
        store: The trace store.
        kind: ``eval``, ``sft`` or ``preference``.
        out: The JSONL file to write (replaced atomically: a failed export leaves the old file).
        filter: Which traces (default: all).
        dedup: Collapse near-duplicate questions (needs ``embedder``, default the local MiniLM).
        threshold: Cosine similarity for near-duplicates.
        embedder: The embedder for ``dedup``.
        min_margin: Preference pairs need ratings at least this far apart.
        redact: Rewrites each string before it is written (default: the ``pii`` and ``secrets``
            guards). Every string in every row passes through it.
        pairwise: A ``judge_pairwise`` scorer: for ``preference``, questions whose answers have no
            usable ratings get their two newest distinct answers judged (in both orders).

    Raises:
        InputError: an unknown ``kind``.
    """
    if kind not in EXPORT_KINDS:
        raise InputError(f"unknown export kind {kind!r} (use {', '.join(EXPORT_KINDS)})")
    flt = filter or TraceFilter()
    items, skipped = load_interactions(store, flt)
    if dedup and embedder is None and len(items) > 1:
        from aiapp.gateway.embedders import DEFAULT_EMBEDDER, build_embedder

        embedder = build_embedder(DEFAULT_EMBEDDER)
    groups = (
        collapse_near_duplicates(items, embedder if dedup else None, threshold=threshold)
        if dedup
        else [[i] for i in items]
    )
    rows = list(_rows(kind, groups, skipped, min_margin, pairwise))
    base = redact or pii_redactor()
    changed = 0

    def counting(text: str) -> str:
        nonlocal changed
        result = base(text)
        changed += result != text
        return result

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(scrub(row, counting), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return ExportReport(
        kind=kind,
        path=str(path),
        rows=len(rows),
        traces=len(items),
        collapsed=sum(len(g) - 1 for g in groups),
        skipped=skipped,
        redactions=changed,
    )


def _representative(group: Sequence[Interaction]) -> Interaction:
    rated = [i for i in group if i.feedback]
    chosen = rated[0] if rated else group[0]  # groups keep newest-first order
    chosen.duplicates = [i.trace_id for i in group if i is not chosen]
    return chosen


def _rows(
    kind: ExportKind,
    groups: Sequence[Sequence[Interaction]],
    skipped: dict[str, int],
    min_margin: float,
    pairwise: PairwiseJudge | None,
) -> Iterator[dict[str, Any]]:
    def skip(reason: str, n: int = 1) -> None:
        skipped[reason] = skipped.get(reason, 0) + n

    for group in groups:
        if kind == "eval":
            yield eval_row(_representative(group))
        elif kind == "sft":
            usable = [i for i in group if i.sign != "negative"]
            if len(usable) < len(group):
                skip("negative feedback (not a training example)", len(group) - len(usable))
            if not usable:
                continue
            row = sft_row(_representative(usable))
            if row is None:
                skip("not a plain chat (tool calls or non-text messages)")
            else:
                yield row
        else:
            pair = _rated_pair(group, min_margin)
            if isinstance(pair, str) and pairwise is not None:
                pair = _judged_pair(group, pairwise, pair)
            if isinstance(pair, str):
                skip(pair, len(group))
                continue
            row = preference_row(*pair)
            if row is None:
                skip("not a plain chat (tool calls or non-text messages)", len(group))
            else:
                yield row


def _rated_pair(
    group: Sequence[Interaction], min_margin: float
) -> tuple[Interaction, Interaction, str] | str:
    """The best and worst rated answers (feedback, else online scores), or why there is no pair."""
    ranked = sorted(
        (i for i in group if _preference_key(i) is not None),
        key=lambda i: _preference_key(i) or 0.0,
        reverse=True,
    )
    if len(ranked) < 2:
        return "no pair: fewer than two rated answers to the question"
    best, worst = ranked[0], ranked[-1]
    if (_preference_key(best) or 0.0) - (_preference_key(worst) or 0.0) < min_margin:
        return "no pair: ratings too close"
    if best.answer.strip() == worst.answer.strip():
        return "no pair: the answers are the same"
    return best, worst, "feedback" if best.rating is not None and worst.rating is not None else "scores"


def _judged_pair(
    group: Sequence[Interaction], judge: PairwiseJudge, why_not_rated: str
) -> tuple[Interaction, Interaction, str] | str:
    """The newest two distinct answers, ordered by a pairwise judge (asked in both orders)."""
    distinct: dict[str, Interaction] = {}
    for item in group:
        distinct.setdefault(" ".join(item.answer.split()), item)
    if len(distinct) < 2:
        return why_not_rated
    a, b = list(distinct.values())[:2]
    from aiapp.evals._score import Case, Output
    from aiapp.gateway import run_sync

    verdict = run_sync(
        judge.acompare(Case(id=a.trace_id, input=a.question), Output(text=a.answer), Output(text=b.answer))
    )
    if verdict.value is None:
        return f"no pair: the pairwise judge did not decide ({verdict.reason})"
    if verdict.value == 0.5:
        return "no pair: the pairwise judge found a tie"
    return (a, b, "pairwise judge") if verdict.value > 0.5 else (b, a, "pairwise judge")
