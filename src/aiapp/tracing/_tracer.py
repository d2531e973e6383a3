"""Spans and the current-trace context.

A :class:`Tracer` writes spans to a :class:`TraceStore`. ``tracer.span(...)`` opens a span that
nests under whatever span is current in this task/thread (``contextvars``), so a RAG request, its
retrieval and its model call share one trace id without being passed around.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiapp.tracing._export import Exporter, ExportPipeline, ScoreRecord
from aiapp.tracing._store import SpanRecord, TraceStore


@dataclass
class SpanContext:
    """The ids of the span currently open, and fields to record when it closes."""

    trace_id: str
    span_id: str
    record: SpanRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_current: contextvars.ContextVar[SpanContext | None] = contextvars.ContextVar("aiapp_span", default=None)
_annotations: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "aiapp_annotations", default=None
)


def annotate(**attributes: Any) -> None:
    """Add attributes to the gateway call in progress (its trace span's ``attributes``).

    Middleware that wraps a model (caches, guards, budgets) uses this to put its verdicts into the
    trace without knowing about spans. Outside a gateway call it does nothing.
    """
    current = _annotations.get()
    if current is not None:
        current.update(attributes)


@contextmanager
def collecting_annotations() -> Iterator[dict[str, Any]]:
    """Collect :func:`annotate` calls made inside the block (used by the gateway around each call)."""
    collected: dict[str, Any] = {}
    token = _annotations.set(collected)
    try:
        yield collected
    finally:
        _annotations.reset(token)


def new_id() -> str:
    """A fresh 16-hex-digit id for traces and spans."""
    # Not secrets.token_hex: ids need to be unique, not unguessable, and urandom is a syscall per call.
    # The random module reseeds itself in forked children, so workers do not repeat ids.
    return f"{random.getrandbits(64):016x}"


def current_span() -> SpanContext | None:
    """The span open in this context, if any."""
    return _current.get()


class Tracer:
    """Records spans to a store; with ``store=None`` ids are still minted but nothing is written.

    Args:
        store: Where spans go.
        store_content: Keep inputs/outputs (prompts, replies); ``False`` keeps metadata only.
        config_hash: Recorded on every span so runs can be tied to their configuration.
        capture: The content-capture policy, applied here, where every span is written:
            ``none`` (no spans stored), ``metadata`` (no inputs, outputs or error text),
            ``redacted`` (content passed through ``redactor``) or ``full``. ``None`` derives it
            from ``store_content``.
        redactor: Rewrites one string for the store (PII and secrets replaced); required by
            ``redacted``, which otherwise degrades to ``metadata`` rather than store raw text.
        exporters: Also hand every written span (after the capture policy) and every
            :meth:`export_score` to these, batched on a background thread (:class:`ExportPipeline`).
        pipeline: A ready pipeline instead of ``exporters`` (its queue and batch sizes).

    Attributes:
        pipeline: The export pipeline, or ``None`` without exporters.
    """

    def __init__(
        self,
        store: TraceStore | None,
        *,
        store_content: bool = True,
        config_hash: str | None = None,
        capture: CapturePolicy | None = None,
        redactor: Callable[[str], str] | None = None,
        exporters: Sequence[Exporter] = (),
        pipeline: ExportPipeline | None = None,
    ) -> None:
        self.store = store
        self.capture: CapturePolicy = capture or ("full" if store_content else "metadata")
        if self.capture == "redacted" and redactor is None:
            self.capture = "metadata"  # never fall back to storing what should have been redacted
        self.store_content = self.capture in ("full", "redacted")
        self.redactor = redactor
        self.config_hash = config_hash
        if pipeline is None and exporters:
            pipeline = ExportPipeline(exporters)
        self.pipeline = pipeline

    def start(self) -> tuple[str, str, str | None]:
        """Ids for a new span: (trace_id, span_id, parent_id), nested under the current span."""
        parent = _current.get()
        span_id = new_id()
        if parent is None:
            return span_id, span_id, None
        return parent.trace_id, span_id, parent.span_id

    def write(self, record: SpanRecord) -> None:
        """Persist a finished span (content dropped when ``store_content`` is off) and export it."""
        pipeline = self.pipeline
        if (self.store is None and pipeline is None) or self.capture == "none":
            return
        if record.config_hash is None:
            record.config_hash = self.config_hash
        if self.capture == "metadata":
            record.input = None
            record.output = None
        elif self.capture == "redacted" and self.redactor is not None:
            record.input = _scrub(record.input, self.redactor)
            record.output = _scrub(record.output, self.redactor)
            if record.error:
                record.error = self.redactor(record.error)
        if self.store is not None:
            self.store.record(record)
        if pipeline is not None:
            pipeline.submit(record)

    def export_score(
        self,
        trace_id: str,
        name: str,
        value: float,
        *,
        comment: str | None = None,
        source: str = "user",
        span_id: str | None = None,
    ) -> None:
        """Send a score on a trace (feedback, an eval or online score) to the exporters.

        A no-op without exporters. The comment follows the capture policy like span content:
        dropped under ``none``/``metadata``, passed through the redactor under ``redacted``.
        Never blocks and never raises into the caller.
        """
        pipeline = self.pipeline
        if pipeline is None:
            return
        if comment is not None:
            if self.capture in ("none", "metadata"):
                comment = None
            elif self.capture == "redacted" and self.redactor is not None:
                comment = self.redactor(comment)
        pipeline.submit(
            ScoreRecord(
                trace_id=trace_id,
                name=name,
                value=float(value),
                comment=comment,
                source=source,
                span_id=span_id,
            )
        )

    def flush_exports(self, timeout_s: float = 10.0) -> bool:
        """Push queued spans and scores to the exporters now (``True`` without exporters)."""
        return True if self.pipeline is None else self.pipeline.flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush and stop the export pipeline (the store is closed by its owner)."""
        if self.pipeline is not None:
            self.pipeline.shutdown(timeout_s)

    @contextmanager
    def span(self, kind: str, name: str, **fields: Any) -> Iterator[SpanRecord]:
        """Open a span; fields set on the yielded record are written when the block exits."""
        trace_id, span_id, parent_id = self.start()
        record = SpanRecord(
            span_id=span_id, trace_id=trace_id, parent_id=parent_id, kind=kind, name=name, **fields
        )
        token = _current.set(SpanContext(trace_id, span_id, record))
        start = time.perf_counter()
        try:
            yield record
        except BaseException as exc:
            record.status = "error"
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            _current.reset(token)
            record.duration_ms = (time.perf_counter() - start) * 1000.0
            self.write(record)


CapturePolicy = Literal["none", "metadata", "redacted", "full"]


def _scrub(value: Any, redactor: Callable[[str], str]) -> Any:
    """Every string inside ``value`` (messages, tool arguments, outputs) passed through ``redactor``."""
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, list | tuple):
        return [_scrub(v, redactor) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, redactor) for k, v in value.items()}
    return value
