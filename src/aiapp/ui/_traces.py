"""What the console reads from the trace store: dashboard figures, the trace list, one trace.

Reads go through a read-only SQLite connection of their own (WAL: they never block the processes
writing traces). The store is opened once with :class:`~aiapp.tracing.TraceStore` first, so its
migrations (the console's indexes among them) are applied.

The dashboard counts *model calls* (``llm`` spans: one per gateway call, whatever made it), from
the rollup in :mod:`aiapp.ui._rollup`; a trace in the list is its root span, read newest first
from the console's partial index on root spans.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiapp.tracing import SpanRecord, TraceStore
from aiapp.ui._rollup import GRAINS, Cell, Rollup, hist_percentile

#: Dashboard time ranges: name → seconds (``None``: everything).
RANGES: dict[str, float | None] = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}
_LIST_COLUMNS = (
    "trace_id, span_id, kind, name, started_at, duration_ms, status, route, model, prompt_ref, input, output"
)


@dataclass
class Filters:
    """Filters shared by the dashboard and the trace list (empty strings mean no filter)."""

    route: str = ""
    model: str = ""
    prompt: str = ""
    status: str = ""
    text: str = ""
    feedback: str = ""  # "", "positive", "negative", "any", "none"
    range: str = "7d"

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        """From a request's query parameters."""
        known = {k: str(query.get(k) or "").strip() for k in cls.__dataclass_fields__}
        known["range"] = known["range"] if known["range"] in RANGES else "7d"
        return cls(**known)

    def since(self, now: float) -> float | None:
        """The range's start time."""
        span = RANGES[self.range]
        return None if span is None else now - span

    def as_query(self) -> dict[str, str]:
        """The non-empty filters, for links."""
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass
class Dashboard:
    """The dashboard's figures: totals and per-bucket series."""

    calls: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown: int = 0
    cache_hits: int = 0
    guard_triggers: int = 0
    feedback_n: int = 0
    feedback_mean: float | None = None
    bucket_s: int = 3600
    buckets: list[float] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)

    @property
    def cache_hit_rate(self) -> float | None:
        """Cache hits over calls."""
        return None if not self.calls else self.cache_hits / self.calls


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


class TraceReader:
    """Read-only queries over ``traces.db`` for the console.

    Args:
        path: The trace store file (created and migrated when missing).
    """

    def __init__(self, path: Path | str, *, rollup: Path | str | None = None) -> None:
        self.path = Path(path)
        TraceStore(self.path).close()  # create and migrate once, with the store's own code
        self._local = threading.local()
        self.rollup = Rollup(
            self.path, Path(rollup) if rollup is not None else self.path.with_name("console.db")
        )

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            db.execute("PRAGMA query_only=1")
            self._local.db = db
        return db

    # -- the dashboard ---------------------------------------------------------------------------

    def dashboard(self, f: Filters, *, now: float | None = None, buckets: int = 24) -> Dashboard:
        """Totals and time series of model calls matching ``f`` (from the rollup, refreshed first)."""
        now = time.time() if now is None else now
        self.rollup.refresh()
        since = f.since(now)
        fine, coarse = GRAINS
        # The chart spans the data inside the range, from its first call, not an empty week; the
        # hourly rollup serves whenever a chart bucket is an hour or more.
        first = self.rollup.first(since, route=f.route, model=f.model, prompt=f.prompt)
        start_at = max(since if since is not None else (first or now - 3600), first or 0.0)
        grain = coarse if (now - start_at) / buckets >= coarse else fine
        cells = self.rollup.cells(grain, since, route=f.route, model=f.model, prompt=f.prompt)
        start_at = start_at // grain * grain
        bucket_s = max(grain, math.ceil((now - start_at) / buckets / grain) * grain)
        start = now // grain * grain + grain - bucket_s * buckets
        out = Dashboard(bucket_s=bucket_s, buckets=[start + i * bucket_s for i in range(buckets)])
        per = [Cell() for _ in range(buckets)]
        total = Cell()
        for bucket, cell in cells:
            b = min(buckets - 1, max(0, int((bucket - start) // bucket_s)))
            per[b].add(cell)
            total.add(cell)
        out.calls, out.errors, out.cache_hits, out.guard_triggers = (
            total.n,
            total.errors,
            total.cache_hits,
            total.guards,
        )
        out.input_tokens, out.output_tokens = total.tokens_in, total.tokens_out
        out.cost_usd, out.cost_unknown = total.cost, total.cost_unknown
        out.p50_ms, out.p95_ms = hist_percentile(total.latency, 0.5), hist_percentile(total.latency, 0.95)
        fb_n = [0] * buckets
        fb_sum = [0.0] * buckets
        for bucket, count, total_score in self.rollup.feedback(
            grain, since, route=f.route, model=f.model, prompt=f.prompt
        ):
            b = min(buckets - 1, max(0, int((bucket - start) // bucket_s)))
            fb_n[b] += count
            fb_sum[b] += total_score
        out.feedback_n = sum(fb_n)
        out.feedback_mean = sum(fb_sum) / out.feedback_n if out.feedback_n else None
        out.series = {
            "requests": [float(c.n) for c in per],
            "errors": [float(c.errors) for c in per],
            "p50_ms": [hist_percentile(c.latency, 0.5) for c in per],
            "p95_ms": [hist_percentile(c.latency, 0.95) for c in per],
            "tokens": [float(c.tokens_in + c.tokens_out) for c in per],
            "cost_usd": [c.cost for c in per],
            "cache_hit_rate": [c.cache_hits / c.n if c.n else None for c in per],
            "guard_triggers": [float(c.guards) for c in per],
            "feedback": [fb_sum[i] / fb_n[i] if fb_n[i] else None for i in range(buckets)],
        }
        out.options = self.options()
        return out

    def options(self) -> dict[str, list[str]]:
        """Distinct routes, models and prompt versions of model calls (for the filter menus)."""
        self.rollup.refresh()
        return self.rollup.labels()

    # -- traces ----------------------------------------------------------------------------------

    def traces(
        self, f: Filters, *, limit: int = 50, before: float | None = None, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Root spans matching ``f``, newest first (``before`` pages further back)."""
        now = time.time() if now is None else now
        clauses = ["parent_id IS NULL"]
        args: list[Any] = []
        since = f.since(now)
        if since is not None:
            clauses.append("started_at >= ?")
            args.append(since)
        if before is not None:
            clauses.append("started_at < ?")
            args.append(before)
        for column, value in (("route", f.route), ("prompt_ref", f.prompt), ("status", f.status)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if f.model:
            clauses.append(
                "EXISTS (SELECT 1 FROM spans c INDEXED BY spans_trace WHERE c.trace_id = spans.trace_id "
                "AND c.kind = 'llm' AND c.model = ?)"
            )
            args.append(f.model)
        if f.text:
            # LIKE is case-insensitive for ASCII and twice as fast here as instr(lower(...)).
            pattern = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(input LIKE ? ESCAPE '\\' OR output LIKE ? ESCAPE '\\' OR trace_id = ?)")
            args += [pattern, pattern, f.text]
        if f.feedback in ("positive", "negative", "any"):
            cond = {"positive": "AND score > 0", "negative": "AND score < 0", "any": ""}[f.feedback]
            clauses.append(f"trace_id IN (SELECT trace_id FROM feedback WHERE 1 {cond})")
        elif f.feedback == "none":
            clauses.append("NOT EXISTS (SELECT 1 FROM feedback WHERE feedback.trace_id = spans.trace_id)")
        sql = (
            f"SELECT {_LIST_COLUMNS} FROM spans INDEXED BY spans_console_roots WHERE {' AND '.join(clauses)} "
            "ORDER BY started_at DESC LIMIT ?"
        )
        rows = self._db().execute(sql, [*args, limit]).fetchall()
        names = [c.strip() for c in _LIST_COLUMNS.split(",")]
        out = [dict(zip(names, row, strict=True)) for row in rows]
        ids = [r["trace_id"] for r in out]
        feedback = self._feedback_summary(ids)
        for r in out:
            r["input"] = _preview(r["input"])
            r["output"] = _preview(r["output"])
            r["feedback"] = feedback.get(r["trace_id"])
        return out

    def _feedback_summary(self, ids: list[str]) -> dict[str, float]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._db().execute(
            f"SELECT trace_id, AVG(score) FROM feedback WHERE trace_id IN ({marks}) GROUP BY trace_id", ids
        )
        return {str(t): float(s) for t, s in rows}

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """Every span of a trace, in start order (a unique 4+ character prefix is enough)."""
        db = self._db()
        cur = db.execute("SELECT * FROM spans WHERE trace_id = ? ORDER BY started_at", [trace_id])
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        if not rows and len(trace_id) >= 4:
            cur = db.execute(
                "SELECT * FROM spans WHERE trace_id >= ? AND trace_id < ? ORDER BY started_at",
                [trace_id, trace_id + "\uffff"],
            )
            rows = cur.fetchall()
        spans = []
        for row in rows:
            data = dict(zip(names, row, strict=True))
            for column in ("deployments", "input", "attributes"):
                if data.get(column) is not None:
                    data[column] = json.loads(data[column])
            if isinstance(data.get("output"), str) and data["output"][:1] in "[{":
                with contextlib.suppress(json.JSONDecodeError):
                    data["output"] = json.loads(data["output"])
            data["deployments"] = data.get("deployments") or []
            data["attributes"] = data.get("attributes") or {}
            if data.get("cache_hit") is not None:
                data["cache_hit"] = bool(data["cache_hit"])
            spans.append(SpanRecord.model_validate(data))
        return spans

    def feedback(self, trace_id: str) -> list[dict[str, Any]]:
        """The trace's feedback rows, oldest first."""
        cur = self._db().execute(
            "SELECT score, comment, source, created_at FROM feedback WHERE trace_id = ? ORDER BY id",
            [trace_id],
        )
        return [dict(zip(("score", "comment", "source", "created_at"), row, strict=True)) for row in cur]

    def scores(self, trace_id: str) -> list[dict[str, Any]]:
        """Stored scores of the trace (the ``scores`` table, where this store has one)."""
        try:
            cur = self._db().execute(
                "SELECT name, value, comment, source, created_at FROM scores WHERE trace_id = ? ORDER BY id",
                [trace_id],
            )
        except sqlite3.OperationalError:  # a store from before scores existed
            return []
        return [
            dict(zip(("name", "value", "comment", "source", "created_at"), row, strict=True)) for row in cur
        ]

    def close(self) -> None:
        """Close this thread's connection and the rollup."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
        self.rollup.close()


def _preview(value: Any, limit: int = 160) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text[:1] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list) and data and isinstance(data[-1], dict):
            text = str(data[-1].get("content") or text)
        elif isinstance(data, dict):
            text = str(data.get("text") or data.get("content") or text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def span_tree(spans: list[SpanRecord]) -> list[tuple[int, SpanRecord]]:
    """``(depth, span)`` in tree order: each span followed by its children, by start time."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else None
        children.setdefault(parent, []).append(s)
    out: list[tuple[int, SpanRecord]] = []

    def walk(parent: str | None, depth: int) -> None:
        for child in sorted(children.get(parent, []), key=lambda s: s.started_at):
            out.append((depth, child))
            walk(child.span_id, depth + 1)

    walk(None, 0)
    return out


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        return str(value[-1]["content"])
    if isinstance(value, dict):
        return str(value.get("text") or value.get("content") or json.dumps(value, ensure_ascii=False))
    return json.dumps(value, ensure_ascii=False, default=str)


def trace_review_items(reader: TraceReader, f: Filters, *, limit: int = 50) -> list[dict[str, Any]]:
    """Review items (case id = trace id) from the newest traces matching ``f``: question, answer, context."""
    out: list[dict[str, Any]] = []
    for row in reader.traces(f, limit=limit):
        spans = reader.trace(row["trace_id"])
        root = next((s for s in spans if s.parent_id is None), spans[0])
        hits = [h for s in spans if s.kind == "retrieval" for h in s.attributes.get("hits") or []]
        out.append(
            {
                "case_id": root.trace_id,
                "question": _text_of(root.input),
                "answer": _text_of(root.output),
                "context": "\n".join(f"[{n}] {h.get('source', '')}" for n, h in enumerate(hits, 1)),
                "trace_id": root.trace_id,
            }
        )
    return out
