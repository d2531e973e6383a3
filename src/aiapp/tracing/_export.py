"""The export pipeline: finished spans and scores handed to exporters off the hot path.

:class:`Tracer` hands every span it writes (after the capture policy has been applied, so an
exporter never sees what the store would not keep) and every score to an :class:`ExportPipeline`.
The pipeline only appends to a bounded in-memory queue on the caller's thread (~0.2 µs); a daemon
thread wakes every ``interval_s`` (or as soon as ``max_batch`` items wait), drains the queue and
calls each :class:`Exporter` with the batch. It never blocks or raises into the caller: when the
queue is full new items are dropped and counted in :attr:`ExportPipeline.dropped` (the first drop
is logged as a warning); an exporter that raises is logged and counted in
:attr:`ExportPipeline.failed`, and the batch is lost for that exporter only.

The thread is woken by a timeout, not once per span: waking a thread per call costs a GIL hand-off
on the caller's path, which is the latency this design avoids (see the trace store's docstring).
:meth:`ExportPipeline.flush` pushes everything out now; :meth:`~ExportPipeline.shutdown` (also run
at interpreter exit) flushes and shuts the exporters down.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from aiapp.errors import ConfigError
from aiapp.tracing._store import SpanRecord

if TYPE_CHECKING:
    from aiapp.config import TracingSettings

log = logging.getLogger("aiapp.tracing")

_PIPELINES: weakref.WeakSet[ExportPipeline] = weakref.WeakSet()


@dataclass(frozen=True)
class ScoreRecord:
    """A score on a trace (an eval result, an online score or a user's feedback) to export.

    Attributes:
        trace_id: The trace scored.
        name: The metric (``faithfulness``, ``feedback`` ...).
        value: The score.
        comment: Free text (a judge's explanation, a user's comment).
        source: Who scored: ``user`` (feedback), ``eval``, ``online`` ...
        span_id: The span scored, when the score is about one span rather than the trace.
        timestamp: When, as a Unix time.
    """

    trace_id: str
    name: str
    value: float
    comment: str | None = None
    source: str = "user"
    span_id: str | None = None
    timestamp: float = field(default_factory=time.time)


@runtime_checkable
class Exporter(Protocol):
    """Where exported spans and scores go (an OTLP backend, Langfuse ...).

    Methods run on the pipeline's thread, never the caller's; they may block on the network.
    An exporter that buffers by itself may also offer ``flush()``; :meth:`ExportPipeline.flush`
    calls it after handing over the queue.
    """

    name: str

    def export(self, spans: Sequence[SpanRecord], scores: Sequence[ScoreRecord]) -> None:
        """Send one batch (either sequence may be empty)."""
        ...

    def shutdown(self) -> None:
        """Send what is buffered and release connections."""
        ...


class ExportPipeline:
    """A bounded queue drained by one background thread into the exporters.

    Args:
        exporters: Where batches go.
        max_queue: The most spans and scores waiting; beyond it new ones are dropped and counted.
        max_batch: The most items handed to the exporters at once; a full batch wakes the thread.
        interval_s: How often the thread drains the queue when it is not full.

    Attributes:
        dropped: Items dropped because the queue was full.
        failed: Batches an exporter raised on.
        exported: Items handed to the exporters.
    """

    def __init__(
        self,
        exporters: Sequence[Exporter],
        *,
        max_queue: int = 20_000,
        max_batch: int = 512,
        interval_s: float = 1.0,
    ) -> None:
        if max_queue < 1 or max_batch < 1:
            raise ValueError("max_queue and max_batch must be at least 1")
        self.exporters = list(exporters)
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.interval_s = interval_s
        self.dropped = 0
        self.failed = 0
        self.exported = 0
        self._queue: deque[SpanRecord | ScoreRecord] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._pending_flush = 0
        self._flushed = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        _PIPELINES.add(self)

    def submit(self, item: SpanRecord | ScoreRecord) -> None:
        """Queue one span or score (never blocks, never raises)."""
        if self._closed:
            return
        queue = self._queue
        size = len(queue)
        if size >= self.max_queue:
            self.dropped += 1
            if self.dropped == 1:
                log.warning(
                    "trace export queue is full (%d items): dropping new spans until the exporters "
                    "catch up (counted in ExportPipeline.dropped)",
                    self.max_queue,
                )
            return
        queue.append(item)
        if self._thread is None:
            self._start()
        elif size + 1 == self.max_batch:
            self._wake.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything queued now; ``False`` when it did not finish within ``timeout_s``."""
        if self._thread is None or not self._thread.is_alive():
            self._drain()
            self._flush_exporters()
            return True
        with self._idle:
            self._pending_flush += 1
            target = self._pending_flush
            self._wake.set()
            return self._idle.wait_for(lambda: self._flushed >= target, timeout=timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush, stop the thread and shut the exporters down, within ``timeout_s`` in all (idempotent)."""
        if self._closed:
            return
        deadline = time.monotonic() + timeout_s
        self.flush(timeout_s)
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))

        def close_all() -> None:
            for exporter in self.exporters:
                try:
                    exporter.shutdown()
                except Exception:
                    log.exception(
                        "trace exporter %s failed to shut down", getattr(exporter, "name", exporter)
                    )

        # An exporter's own flush can wait on an unreachable backend: never hold the caller longer.
        closer = threading.Thread(target=close_all, name="aiapp-trace-export-close", daemon=True)
        closer.start()
        closer.join(max(0.1, deadline - time.monotonic()))
        if closer.is_alive():
            log.warning("trace exporters did not shut down within %.0f s; leaving them behind", timeout_s)
        if self.dropped:
            log.warning("trace export dropped %d item(s) in all (the queue was full)", self.dropped)

    # -- the background thread ---------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="aiapp-trace-export", daemon=True)
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            with self._idle:
                target = self._pending_flush
            self._drain()
            if target > self._flushed:
                self._flush_exporters()
            with self._idle:
                self._flushed = max(self._flushed, target)
                self._idle.notify_all()

    def _flush_exporters(self) -> None:
        for exporter in self.exporters:
            flush = getattr(exporter, "flush", None)
            if callable(flush):
                try:
                    flush()
                except Exception as exc:
                    log.warning(
                        "trace exporter %s failed to flush: %s", getattr(exporter, "name", exporter), exc
                    )

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            spans: list[SpanRecord] = []
            scores: list[ScoreRecord] = []
            while queue and len(spans) + len(scores) < self.max_batch:
                item = queue.popleft()
                if isinstance(item, ScoreRecord):
                    scores.append(item)
                else:
                    spans.append(item)
            self._send(spans, scores)

    def _send(self, spans: list[SpanRecord], scores: list[ScoreRecord]) -> None:
        for exporter in self.exporters:
            try:
                exporter.export(spans, scores)
            except Exception as exc:
                self.failed += 1
                log.warning(
                    "trace exporter %s failed on a batch of %d span(s) and %d score(s): %s: %s",
                    getattr(exporter, "name", type(exporter).__name__),
                    len(spans),
                    len(scores),
                    type(exc).__name__,
                    exc,
                )
        self.exported += len(spans) + len(scores)


def build_exporters(settings: TracingSettings) -> list[Exporter]:
    """The exporters ``tracing.export`` asks for (none when it is unset).

    Raises:
        ConfigError: when the exporter's extra is not installed or Langfuse keys are missing.
    """
    if settings.export is None:
        return []
    try:
        if settings.export == "otlp":
            from aiapp.tracing._otel import OtlpExporter

            return [
                OtlpExporter(
                    endpoint=settings.endpoint, headers=settings.headers, content=settings.export_content
                )
            ]
        from aiapp.tracing._langfuse import LangfuseExporter

        return [LangfuseExporter.from_env(content=settings.export_content)]
    except ImportError as exc:
        extra = "otel" if settings.export == "otlp" else "langfuse"
        raise ConfigError(
            f"tracing.export is {settings.export!r} but {exc.name or 'its package'} is not installed: "
            f"pip install 'aiapp[{extra}]'",
            field="tracing.export",
        ) from exc


def _after_fork_in_child() -> None:
    """A forked worker starts with no export thread: let the next span start a fresh one."""
    for pipeline in list(_PIPELINES):
        pipeline._thread = None
        pipeline._start_lock = threading.Lock()
        pipeline._wake = threading.Event()
        pipeline._idle = threading.Condition()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _shutdown_all() -> None:  # pragma: no cover - runs at interpreter exit
    for pipeline in list(_PIPELINES):
        pipeline.shutdown(timeout_s=5.0)
