"""Tracing: every model call, retrieval and tool call is a span in a local SQLite store.

Spans nest by context (a RAG request's retrieval and model call share its trace id). The store
lives at ``$AIAPP_HOME/traces.db`` and migrates itself forward on open.
"""

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
    "SpanContext",
    "SpanRecord",
    "TraceStore",
    "Tracer",
    "annotate",
    "collecting_annotations",
    "current_span",
    "new_id",
]
