"""Tracing: every model call, retrieval and tool call is a span in a local SQLite store.

Spans nest by context (a RAG request's retrieval and model call share its trace id). The store
lives at ``$AIAPP_HOME/traces.db`` and migrates itself forward on open. With ``tracing.export``
(``otlp`` or ``langfuse``) the same spans and scores also leave the machine, batched off the hot
path (:class:`ExportPipeline`, :func:`build_exporters`).
"""

from aiapp.tracing._export import Exporter, ExportPipeline, ScoreRecord, build_exporters
from aiapp.tracing._feedback import FeedbackRecord, record_feedback
from aiapp.tracing._store import SpanRecord, TraceStore
from aiapp.tracing._tracer import (
    SpanContext,
    Tracer,
    annotate,
    collecting_annotations,
    current_span,
    new_id,
)

__all__ = [
    "ExportPipeline",
    "Exporter",
    "FeedbackRecord",
    "ScoreRecord",
    "SpanContext",
    "SpanRecord",
    "TraceStore",
    "Tracer",
    "annotate",
    "build_exporters",
    "collecting_annotations",
    "current_span",
    "new_id",
    "record_feedback",
]
