"""Stored traces read back as interactions (question, answer, context, feedback, scores), and the
filter that selects them: the input of the flywheel (:mod:`aiapp.evals._from_traces`) and of online
scoring (:mod:`aiapp.evals._online`).

A trace is one interaction: its question is the app span's input (or the last user message of its
model call), its answer the app span's output (or the model call's reply), its context the
retrieval span's hits with their text recovered from the ``[n] source`` blocks of the prompt.
Traces without content (``tracing.capture: metadata``), failed calls, eval-judge calls and
rollout shadow calls are skipped with their reason counted; a shadow call inside a trace is never
taken for its answer.

Feedback ``+1``/``-1`` counts as 1/0 and a rating in ``[0, 1]`` as itself; a trace's feedback is the
mean, *positive* above 0.5 and *negative* below.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiapp.errors import InputError

if TYPE_CHECKING:
    from aiapp.tracing import SpanRecord, TraceStore

_JUDGE_PURPOSE = "eval judge"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str | float, *, now: float | None = None) -> float:
    """A point in time from ``1d``/``12h``/``30m``/``2w``/``90s`` ago, an ISO date/datetime, or Unix seconds.

    Raises:
        InputError: anything else, naming the value.
    """
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if match:
        return (time.time() if now is None else now) - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"cannot read {text!r} as a time: use a duration ago (30m, 12h, 1d, 2w) or an ISO date"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def parse_duration(text: str) -> float:
    """Seconds in ``30d``/``12h``/``15m``/``2w``/``90s``.

    Raises:
        InputError: anything else.
    """
    match = _DURATION.match(text)
    if not match:
        raise InputError(f"cannot read {text!r} as a duration: use e.g. 30d, 12h, 15m, 2w or 90s")
    return float(match.group(1)) * _UNITS[match.group(2)]


class TraceFilter(BaseModel):
    """Which traces an export or an online scoring run looks at.

    Attributes:
        route: Traces with a span on this route.
        prompt: Traces rendered from this prompt: ``name`` (any version) or ``name@version``.
        since: Traces started at or after this (Unix seconds; the CLI reads ``1d``, ISO dates).
        until: Traces started before this.
        feedback: ``positive``, ``negative``, ``any`` (has feedback) or ``none`` (has none).
        guard_triggered: ``True``: only traces where a guard did not simply allow (redact, block,
            flag ...); ``False``: only traces where none did.
        score_below: Scorer name → threshold: traces whose latest stored score is below it.
        limit: Look at the newest ``limit`` traces at most.
    """

    model_config = ConfigDict(extra="forbid")

    route: str | None = None
    prompt: str | None = None
    since: float | None = None
    until: float | None = None
    feedback: Literal["positive", "negative", "any", "none"] | None = None
    guard_triggered: bool | None = None
    score_below: dict[str, float] = Field(default_factory=dict)
    limit: int | None = Field(default=None, gt=0)

    @classmethod
    def parse(cls, entries: Sequence[str], **given: Any) -> TraceFilter:
        """A filter from ``key=value`` entries (the CLI's ``--filter``) plus keyword fields.

        ``since``/``until`` take durations or dates, ``guard_triggered`` takes true/false, and
        ``score_below`` takes ``name<0.5`` or ``name=0.5``.

        Raises:
            InputError: an unknown key or a bad value, naming it.
        """
        data: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        scores: dict[str, float] = dict(data.pop("score_below", None) or {})
        for entry in entries:
            key, sep, value = entry.partition("=")
            key = key.strip().replace("-", "_")
            if key.startswith("score_below") or "<" in key:
                scores.update(parse_score_below(entry.split("=", 1)[-1] if key == "score_below" else entry))
                continue
            if not sep or not value.strip():
                raise InputError(
                    f"--filter {entry!r}: expected key=value (e.g. route=support, feedback=negative)"
                )
            data[key] = value.strip()
        for key in ("since", "until"):
            if isinstance(data.get(key), str):
                data[key] = parse_time(data[key])
        flag = data.get("guard_triggered")
        if isinstance(flag, str):
            if flag.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise InputError(f"--filter guard_triggered={flag!r}: use true or false")
            data["guard_triggered"] = flag.lower() in ("true", "yes", "1")
        data["score_below"] = scores
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            problem = "unknown filter" if first["type"] == "extra_forbidden" else first["msg"]
            raise InputError(f"--filter {where}: {problem} (known: {', '.join(cls.model_fields)})") from exc


def parse_score_below(text: str) -> dict[str, float]:
    """``faithfulness<0.5`` or ``faithfulness=0.5`` → ``{"faithfulness": 0.5}``."""
    name, sep, value = text.replace("<", "=", 1).partition("=")
    try:
        threshold = float(value)
    except ValueError:
        threshold = float("nan")
    if not sep or not name.strip() or threshold != threshold:
        raise InputError(f"score filter {text!r}: expected scorer<threshold, e.g. faithfulness<0.5")
    return {name.strip(): threshold}


# -- traces as interactions ---------------------------------------------------------------------


@dataclass
class Interaction:
    """One traced question and answer, with what is known about it.

    Attributes:
        trace_id: The trace.
        started_at: When the trace started (Unix seconds).
        question: The user's question as stored.
        answer: What the user was answered.
        messages: The chat messages the model was sent (OpenAI shape), for SFT rows.
        context: Retrieved passages: ``n``, ``source``, ``chunk_id``, ``score``, ``text``.
        route: The route that answered.
        prompt: The prompt ``name@version``.
        prompt_hash: The prompt's content hash.
        model: The deployment that answered.
        feedback: Feedback rows.
        scores: Stored score rows.
        guards: Guard verdicts recorded in the trace.
        duplicates: Trace ids of near-duplicate questions collapsed into this one.
    """

    trace_id: str
    started_at: float
    question: str
    answer: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    context: list[dict[str, Any]] = field(default_factory=list)
    route: str | None = None
    prompt: str | None = None
    prompt_hash: str | None = None
    model: str | None = None
    feedback: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    guards: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def rating(self) -> float | None:
        """Mean feedback, ``+1``/``-1`` counted as 1/0 (``None`` without feedback)."""
        values = [0.0 if float(f["score"]) == -1.0 else float(f["score"]) for f in self.feedback]
        return sum(values) / len(values) if values else None

    @property
    def sign(self) -> Literal["positive", "negative", "neutral"] | None:
        """The feedback's sign (``None`` without feedback)."""
        rating = self.rating
        if rating is None:
            return None
        return "positive" if rating > 0.5 else "negative" if rating < 0.5 else "neutral"

    @property
    def guard_triggered(self) -> bool:
        """Whether a guard did anything but allow."""
        return any(g.get("action") not in (None, "allow") for g in self.guards)

    def latest_score(self, name: str) -> float | None:
        """The newest scored value of scorer ``name``."""
        values = [s["value"] for s in self.scores if s["name"] == name and s["value"] is not None]
        return float(values[-1]) if values else None

    def mean_score(self) -> float | None:
        """The mean of the newest value of each stored scorer."""
        names = {s["name"] for s in self.scores}
        latest = [v for v in (self.latest_score(n) for n in names) if v is not None]
        return sum(latest) / len(latest) if latest else None


def load_interactions(store: TraceStore, flt: TraceFilter) -> tuple[list[Interaction], dict[str, int]]:
    """The interactions ``flt`` selects, newest first, and skip reasons with their counts."""
    traces = store.traces(since=flt.since, until=flt.until, route=flt.route, limit=flt.limit)
    ids = [spans[0].trace_id for spans in traces if spans]
    feedback = store.feedback_for(ids)
    scores = store.scores_for(ids)
    kept: list[Interaction] = []
    skipped: dict[str, int] = {}
    for spans in traces:
        found = interaction_from_spans(spans)
        if isinstance(found, str):
            skipped[found] = skipped.get(found, 0) + 1
            continue
        found.feedback = feedback.get(found.trace_id, [])
        found.scores = scores.get(found.trace_id, [])
        if _selected(found, flt):
            kept.append(found)
    return kept, skipped


def _selected(item: Interaction, flt: TraceFilter) -> bool:
    if (
        flt.prompt is not None
        and item.prompt != flt.prompt
        and ("@" in flt.prompt or (item.prompt or "").split("@", 1)[0] != flt.prompt)
    ):
        return False
    if flt.feedback == "any" and not item.feedback:
        return False
    if flt.feedback == "none" and item.feedback:
        return False
    if flt.feedback in ("positive", "negative") and item.sign != flt.feedback:
        return False
    if flt.guard_triggered is not None and item.guard_triggered != flt.guard_triggered:
        return False
    for name, threshold in flt.score_below.items():
        value = item.latest_score(name)
        if value is None or value >= threshold:
            return False
    return True


def interaction_from_spans(spans: Sequence[SpanRecord]) -> Interaction | str:
    """The interaction in one trace's spans, or why there is none (a skip reason)."""
    if not spans:
        return "empty trace"
    root = next((s for s in spans if s.parent_id is None), spans[0])
    calls = [s for s in spans if s.kind == "llm"]
    if calls and all(s.attributes.get("purpose") == _JUDGE_PURPOSE for s in calls):
        return "an eval judge's call"
    # A rollout's shadow calls (another prompt version, run after the answer) are not the answer.
    llms = [s for s in calls if "shadow_of" not in s.attributes]
    if calls and not llms:
        return "a rollout shadow call"
    answered = [s for s in llms if s.status == "ok" and isinstance(s.output, str)]
    call = answered[-1] if answered else None
    if root.status != "ok" or (call is None and not isinstance(root.output, str)):
        if all(s.input is None and s.output is None for s in spans):
            return "no content stored (tracing.capture: metadata)"
        return "the call failed"
    messages = _chat_messages(call.input) if call is not None else []
    question = root.input if root.kind != "llm" and isinstance(root.input, str) else _last_user(messages)
    answer = (
        root.output
        if root.kind == "app" and isinstance(root.output, str)
        else (call.output if call else None)
    )
    if not isinstance(answer, str) or not answer.strip() or not question or not question.strip():
        if all(s.input is None and s.output is None for s in spans):
            return "no content stored (tracing.capture: metadata)"
        return "no question or answer in the trace"
    guards = [g for s in spans for g in (s.attributes.get("guards") or []) if isinstance(g, dict)]
    return Interaction(
        trace_id=root.trace_id,
        started_at=root.started_at,
        question=question,
        answer=answer,
        messages=messages,
        context=_context(spans, messages),
        route=root.route or (call.route if call else None),
        prompt=root.prompt_ref or (call.prompt_ref if call else None),
        prompt_hash=root.prompt_hash or (call.prompt_hash if call else None),
        model=(call.model if call else None) or root.model,
        guards=guards,
    )


def _chat_messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    out = []
    for m in value:
        if isinstance(m, dict) and isinstance(m.get("role"), str):
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            out.append({**m, "content": content})
    return out


def _last_user(messages: Sequence[dict[str, Any]]) -> str | None:
    for m in reversed(messages):
        if m["role"] == "user" and isinstance(m.get("content"), str):
            return str(m["content"])
    return None


def _context(spans: Sequence[SpanRecord], messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The retrieval span's hits, with each one's text found in its ``[n] source`` block of the prompt."""
    hits: list[dict[str, Any]] = []
    for span in spans:
        if span.kind == "retrieval":
            hits += [h for h in span.attributes.get("hits") or [] if isinstance(h, dict)]
    prompt = "\n\n".join(str(m.get("content") or "") for m in messages if m["role"] in ("system", "user"))
    starts: list[tuple[int, int, dict[str, Any]]] = []
    for n, hit in enumerate(hits, start=1):
        header = f"[{n}] {hit.get('source') or hit.get('chunk_id') or 'unknown'}\n"
        at = prompt.find(header)
        if at >= 0:
            starts.append((at, at + len(header), {"n": n, **hit}))
    out: list[dict[str, Any]] = []
    for i, (_, body, hit) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(prompt)
        closing = prompt.find("</context>", body, end)
        text = prompt[body : closing if closing >= 0 else end].strip()
        out.append(
            {
                "n": hit["n"],
                "source": hit.get("source"),
                "chunk_id": hit.get("chunk_id"),
                "score": hit.get("score"),
                "text": text,
            }
        )
    if not starts:  # passages not recoverable (another prompt shape): keep the sources
        out = [
            {
                "n": n,
                "source": h.get("source"),
                "chunk_id": h.get("chunk_id"),
                "score": h.get("score"),
                "text": None,
            }
            for n, h in enumerate(hits, start=1)
        ]
    return out
