"""The export pipeline: off the caller's thread, bounded, never raising; the capture policy applies."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest

from aiapp.config import TracingSettings
from aiapp.errors import ConfigError
from aiapp.tracing import (
    Exporter,
    ExportPipeline,
    ScoreRecord,
    SpanRecord,
    Tracer,
    TraceStore,
    build_exporters,
)


class Collecting:
    """An exporter that records batches and the thread each arrived on."""

    name = "collecting"

    def __init__(self, *, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.spans: list[SpanRecord] = []
        self.scores: list[ScoreRecord] = []
        self.threads: set[str] = set()
        self.gate = gate
        self.fail = fail
        self.flushed = 0
        self.closed = False

    def export(self, spans: Sequence[SpanRecord], scores: Sequence[ScoreRecord]) -> None:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise ConnectionError("backend down")
        self.spans.extend(spans)
        self.scores.extend(scores)

    def flush(self) -> None:
        self.flushed += 1

    def shutdown(self) -> None:
        self.closed = True


def test_a_collecting_exporter_satisfies_the_protocol() -> None:
    assert isinstance(Collecting(), Exporter)


def test_spans_and_scores_reach_exporters_on_the_background_thread() -> None:
    sink = Collecting()
    tracer = Tracer(TraceStore(":memory:"), exporters=[sink])
    with tracer.span("app", "support") as root, tracer.span("retrieval", "handbook", input="q"):
        pass
    tracer.export_score(root.trace_id, "feedback", 1, comment="thanks", span_id=root.span_id)
    assert tracer.flush_exports()
    assert [s.kind for s in sink.spans] == ["retrieval", "app"]
    assert sink.spans[0].parent_id == root.span_id
    [score] = sink.scores
    assert (score.trace_id, score.name, score.value, score.comment, score.source, score.span_id) == (
        root.trace_id,
        "feedback",
        1.0,
        "thanks",
        "user",
        root.span_id,
    )
    assert sink.threads == {"aiapp-trace-export"} and sink.flushed >= 1
    tracer.shutdown()
    assert sink.closed


def test_export_score_is_a_no_op_without_exporters() -> None:
    tracer = Tracer(TraceStore(":memory:"))
    tracer.export_score("abc", "feedback", 1.0)
    assert tracer.pipeline is None and tracer.flush_exports()


def test_a_full_queue_drops_and_counts_without_blocking(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    sink = Collecting(gate=gate)
    pipeline = ExportPipeline([sink], max_queue=5, max_batch=1, interval_s=0.01)
    tracer = Tracer(None, pipeline=pipeline)
    with caplog.at_level(logging.WARNING, logger="aiapp.tracing"):
        for i in range(50):
            with tracer.span("tool", f"t{i}"):
                pass
    assert pipeline.dropped > 0
    assert "queue is full" in caplog.text
    gate.set()
    assert pipeline.flush()
    assert len(sink.spans) + pipeline.dropped == 50
    pipeline.shutdown()


def test_an_exporter_that_raises_is_logged_and_counted_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    bad, good = Collecting(fail=True), Collecting()
    tracer = Tracer(None, exporters=[bad, good])
    with caplog.at_level(logging.WARNING, logger="aiapp.tracing"):
        with tracer.span("app", "a"):
            pass
        assert tracer.flush_exports()
    assert tracer.pipeline is not None and tracer.pipeline.failed == 1
    assert len(good.spans) == 1  # one exporter failing does not cost the others their batch
    assert "backend down" in caplog.text


def test_exporters_get_spans_after_the_capture_policy() -> None:
    sink = Collecting()
    tracer = Tracer(
        None, capture="redacted", redactor=lambda s: s.replace("ada@example.com", "<EMAIL>"), exporters=[sink]
    )
    with tracer.span("app", "a", input="mail ada@example.com") as span:
        span.output = {"reply": "sent to ada@example.com"}
    tracer.export_score(span.trace_id, "feedback", -1, comment="ada@example.com was wrong")
    tracer.flush_exports()
    assert sink.spans[0].input == "mail <EMAIL>" and sink.spans[0].output == {"reply": "sent to <EMAIL>"}
    assert sink.scores[0].comment == "<EMAIL> was wrong"

    meta = Collecting()
    tracer = Tracer(None, capture="metadata", exporters=[meta])
    with tracer.span("app", "a", input="hello"):
        pass
    tracer.export_score("t", "feedback", 1, comment="hello")
    tracer.flush_exports()
    assert meta.spans[0].input is None and meta.scores[0].comment is None

    nothing = Collecting()
    tracer = Tracer(None, capture="none", exporters=[nothing])
    with tracer.span("app", "a"):
        pass
    tracer.flush_exports()
    assert nothing.spans == []


def test_build_exporters_follows_tracing_export(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_exporters(TracingSettings()) == []
    [otlp] = build_exporters(TracingSettings(export="otlp", endpoint="http://127.0.0.1:9/v1/traces"))
    assert otlp.name == "otlp"
    otlp.shutdown()
    for var in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST", "LANGFUSE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="LANGFUSE_PUBLIC_KEY") as info:
        build_exporters(TracingSettings(export="langfuse"))
    assert info.value.field == "tracing.export"


def test_tracing_export_rejects_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match="export"):
        TracingSettings(export="datadog")  # type: ignore[arg-type]


def test_a_forked_worker_exports_from_its_own_thread() -> None:
    import os

    sink = Collecting()
    tracer = Tracer(None, exporters=[sink])
    with tracer.span("app", "parent"):
        pass
    assert tracer.flush_exports()
    pid = os.fork()
    if pid == 0:  # the child: the parent's export thread did not survive the fork
        try:
            with tracer.span("app", "child"):
                pass
            ok = tracer.flush_exports(5.0) and [s.name for s in sink.spans] == ["parent", "child"]
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [s.name for s in sink.spans] == ["parent"]


def test_shutdown_leaves_a_stuck_exporter_behind_rather_than_hang(caplog: pytest.LogCaptureFixture) -> None:
    released = threading.Event()

    class Stuck(Collecting):
        def shutdown(self) -> None:
            released.wait(60)  # an SDK flushing to a backend that never answers

    sink = Stuck()
    pipeline = ExportPipeline([sink], interval_s=0.01)
    pipeline.submit(SpanRecord(span_id="a", trace_id="a", kind="app", name="x"))
    with caplog.at_level(logging.WARNING, logger="aiapp.tracing"):
        pipeline.shutdown(timeout_s=0.2)
    assert not released.is_set() and "did not shut down" in caplog.text  # returned while it still hangs
    assert len(sink.spans) == 1
    released.set()
