"""OpenTelemetry export: our spans re-created as OTel spans and sent over OTLP/HTTP.

The only module of ours that imports ``opentelemetry`` (the ``otel`` extra). Each
:class:`~aiapp.tracing.SpanRecord` becomes one OTel span with the same ids (our 64-bit trace id
zero-padded to OTel's 128 bits; span ids as they are), parent, start and end time, so the tree a
backend shows is the tree in the local store. Guard verdicts recorded on a model call become child
``guard`` spans; a score becomes a zero-length ``evaluation`` child span of the span it scores
carrying one ``gen_ai.evaluation.result`` event (a span already exported cannot get new events,
and OTLP backends such as Phoenix read span events, not log records).

Attribute names follow the OpenTelemetry GenAI semantic conventions in their latest published
form: semantic-conventions v1.44.0 (schema https://opentelemetry.io/schemas/1.44.0), whose GenAI
part now lives on in open-telemetry/semantic-conventions-genai (status: development). That version
has ``gen_ai.provider.name`` (not the old ``gen_ai.system``), ``gen_ai.input.messages`` /
``gen_ai.output.messages`` as structured JSON parts, and evaluation results as the
``gen_ai.evaluation.result`` event. aiapp's own facts go under ``aiapp.*``.

Content (messages, tool arguments and results, retrieval queries, error text, score comments)
is exported only when the exporter is asked for it *and* the capture policy kept it: exporters see
spans after :class:`~aiapp.tracing.Tracer` applied the policy, so under ``redacted`` they get the
redacted text and under ``metadata`` none at all. Attributes whose names look like credentials
(``key``, ``token``, ``secret``, ``password``, ``authorization``) are never exported.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace import SpanContext as OtelSpanContext

from aiapp.tracing._export import ScoreRecord
from aiapp.tracing._store import SpanRecord

#: The GenAI semantic conventions these spans follow (see the module docstring).
SEMCONV_VERSION = "1.44.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
SCOPE_NAME = "aiapp"


#: Our span kinds → gen_ai.operation.name (kinds not listed carry no GenAI operation).
_OPERATIONS = {
    "llm": "chat",
    "agent": "invoke_agent",
    "tool": "execute_tool",
    "retrieval": "retrieval",
    "app": "invoke_workflow",
}
#: Our span kinds → openinference.span.kind (how Phoenix's UI groups spans).
_OPENINFERENCE = {
    "llm": "LLM",
    "agent": "AGENT",
    "tool": "TOOL",
    "retrieval": "RETRIEVER",
    "guard": "GUARDRAIL",
    "evaluation": "EVALUATOR",
}
#: litellm-style provider prefixes → gen_ai.provider.name well-known values.
_PROVIDERS = {
    "hosted_vllm": "vllm",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}
_SECRET_WORDS = ("key", "token", "secret", "password", "authorization", "credential")
#: Attributes handled explicitly (or content) rather than copied as ``aiapp.attributes.*``.
_HANDLED = {"guards", "hits", "corpus_version", "cache", "finish_reason", "k", "tools", "tried"}


@dataclass
class SpanData:
    """One span to emit, independent of any exporter (ids as OTel integers, times in ns)."""

    name: str
    kind: SpanKind
    trace_id: int
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    error: str | None = None
    status_text: str | None = None


def otel_id(value: str, *, bits: int) -> int:
    """Our hex id as an OTel id (a non-hex id is hashed, so it stays stable)."""
    try:
        number = int(value, 16)
    except ValueError:
        number = int.from_bytes(hashlib.sha256(value.encode()).digest()[: bits // 8], "big")
    number &= (1 << bits) - 1
    return number or 1


def provider_name(model: str | None) -> str | None:
    """``gen_ai.provider.name`` for a deployment like ``openai/gpt-4o-mini``."""
    if not model or "/" not in model:
        return None
    prefix = model.split("/", 1)[0]
    return _PROVIDERS.get(prefix, prefix)


def convert(record: SpanRecord, *, content: bool) -> list[SpanData]:
    """The OTel span(s) for one record: the span itself, then one per guard verdict."""
    attributes = _attributes(record, content=content)
    start_ns = int(record.started_at * 1e9)
    end_ns = start_ns + max(0, int(record.duration_ms * 1e6))
    error_type = _error_type(record.error)
    span = SpanData(
        name=_span_name(record),
        kind=SpanKind.CLIENT if record.kind == "llm" else SpanKind.INTERNAL,
        trace_id=otel_id(record.trace_id, bits=128),
        span_id=otel_id(record.span_id, bits=64),
        parent_id=otel_id(record.parent_id, bits=64) if record.parent_id else None,
        start_ns=start_ns,
        end_ns=end_ns,
        attributes=attributes,
        error=error_type if record.status == "error" else None,
        status_text=record.error if content else None,
    )
    out = [span]
    guards = record.attributes.get("guards")
    if isinstance(guards, list):
        for index, verdict in enumerate(guards):
            if isinstance(verdict, dict):
                out.append(_guard_span(span, record, index, verdict, content=content))
    return out


def convert_score(score: ScoreRecord, *, content: bool) -> SpanData:
    """A zero-length ``evaluation`` span under the scored span, with its evaluation event."""
    parent = score.span_id or score.trace_id  # a root span's id is its trace id
    at = int(score.timestamp * 1e9)
    event: dict[str, Any] = {
        "gen_ai.evaluation.name": score.name,
        "gen_ai.evaluation.score.value": float(score.value),
        "aiapp.score.source": score.source,
    }
    label = "positive" if score.value > 0 else "negative" if score.value < 0 else "neutral"
    event["gen_ai.evaluation.score.label"] = label
    if content and score.comment:
        event["gen_ai.evaluation.explanation"] = score.comment
    seed = f"{score.trace_id}:{score.span_id}:{score.name}:{score.timestamp}:{score.source}"
    return SpanData(
        name=f"evaluation {score.name}",
        kind=SpanKind.INTERNAL,
        trace_id=otel_id(score.trace_id, bits=128),
        span_id=otel_id(hashlib.sha256(seed.encode()).hexdigest()[:16], bits=64),
        parent_id=otel_id(parent, bits=64),
        start_ns=at,
        end_ns=at,
        attributes={
            "aiapp.span.kind": "evaluation",
            "openinference.span.kind": "EVALUATOR",
            "gen_ai.evaluation.name": score.name,
            "gen_ai.evaluation.score.value": float(score.value),
            "aiapp.score.source": score.source,
        },
        events=[("gen_ai.evaluation.result", event, at)],
    )


# -- attributes -----------------------------------------------------------------------------


def _span_name(record: SpanRecord) -> str:
    operation = _OPERATIONS.get(record.kind)
    if record.kind == "llm":
        return f"chat {record.model or record.route or record.name}"
    if operation is not None:
        return f"{operation} {record.name}"
    return f"{record.kind} {record.name}"


def _attributes(record: SpanRecord, *, content: bool) -> dict[str, Any]:
    a: dict[str, Any] = {"aiapp.span.kind": record.kind, "aiapp.span.name": record.name}
    operation = _OPERATIONS.get(record.kind)
    if operation is not None:
        a["gen_ai.operation.name"] = operation
    a["openinference.span.kind"] = _OPENINFERENCE.get(record.kind, "CHAIN")
    attrs = record.attributes
    _put(a, "aiapp.route", record.route)
    _put(a, "aiapp.status", record.status)
    _put(a, "aiapp.config.hash", record.config_hash)
    _put(a, "aiapp.prompt.ref", record.prompt_ref)
    _put(a, "aiapp.prompt.hash", record.prompt_hash)
    _put(a, "aiapp.cost.usd", record.cost_usd)
    _put(a, "aiapp.cache.hit", record.cache_hit)
    _put(a, "aiapp.cache", attrs.get("cache"))
    _put(a, "gen_ai.usage.input_tokens", record.input_tokens)
    _put(a, "gen_ai.usage.output_tokens", record.output_tokens)
    if record.status == "error":
        _put(a, "error.type", _error_type(record.error))
    if record.kind == "llm":
        requested = record.deployments[0] if record.deployments else record.model
        _put(a, "gen_ai.request.model", requested)
        _put(a, "gen_ai.response.model", record.model)
        _put(a, "gen_ai.provider.name", provider_name(record.model or requested))
        _put(a, "aiapp.deployment", record.model or (record.deployments[-1] if record.deployments else None))
        if record.deployments:
            a["aiapp.deployments"] = list(record.deployments)
        _put(a, "aiapp.attempts", record.attempts)
        finish = attrs.get("finish_reason")
        if isinstance(finish, str) and finish:
            a["gen_ai.response.finish_reasons"] = [finish]
    elif record.kind == "agent":
        a["gen_ai.agent.name"] = record.name
        tools = attrs.get("tools")
        if isinstance(tools, list):
            a["aiapp.agent.tools"] = [str(t) for t in tools]
    elif record.kind == "tool":
        a["gen_ai.tool.name"] = record.name
        a["gen_ai.tool.type"] = "function"
    elif record.kind == "retrieval":
        a["gen_ai.data_source.id"] = record.name
        _put(a, "aiapp.corpus.version", attrs.get("corpus_version"))
        _put(a, "aiapp.retrieval.k", attrs.get("k"))
        hits = attrs.get("hits")
        if isinstance(hits, list):
            a["aiapp.retrieval.hits"] = len(hits)
            sources = [str(h.get("source")) for h in hits if isinstance(h, dict) and h.get("source")]
            if sources:
                a["aiapp.retrieval.sources"] = sources
    elif record.kind == "app":
        a["gen_ai.workflow.name"] = record.name
    guards = attrs.get("guards")
    if isinstance(guards, list) and guards:
        _guard_summary(a, [g for g in guards if isinstance(g, dict)])
    for key, value in attrs.items():
        if key in _HANDLED or _secret(key):
            continue
        if isinstance(value, str | bool | int | float):
            a[f"aiapp.attributes.{key}"] = value
    if content:
        _content(a, record)
    return a


def _guard_summary(a: dict[str, Any], guards: list[dict[str, Any]]) -> None:
    a["aiapp.guard.names"] = [str(g.get("name")) for g in guards]
    a["aiapp.guard.passed"] = all(bool(g.get("passed", True)) for g in guards)
    triggered = [str(g.get("name")) for g in guards if not g.get("passed", True)]
    a["aiapp.guard.triggered"] = triggered
    a["aiapp.guard.actions"] = sorted({str(g.get("action")) for g in guards if not g.get("passed", True)})


def _guard_span(
    parent: SpanData, record: SpanRecord, index: int, verdict: dict[str, Any], *, content: bool
) -> SpanData:
    name = str(verdict.get("name", "guard"))
    latency_ns = int(float(verdict.get("latency_ms", 0.0) or 0.0) * 1e6)
    attributes: dict[str, Any] = {
        "aiapp.span.kind": "guard",
        "openinference.span.kind": "GUARDRAIL",
        "aiapp.guard.name": name,
        "aiapp.guard.stage": str(verdict.get("stage", "")),
        "aiapp.guard.passed": bool(verdict.get("passed", True)),
        "aiapp.guard.action": str(verdict.get("action", "")),
    }
    _put(attributes, "aiapp.guard.score", verdict.get("score"))
    redactions = verdict.get("redactions")
    if isinstance(redactions, list):
        attributes["aiapp.guard.redactions"] = len(redactions)
    if content and verdict.get("reason"):
        attributes["aiapp.guard.reason"] = str(verdict["reason"])
    seed = f"{record.span_id}:guard:{index}"
    return SpanData(
        name=f"guard {name}",
        kind=SpanKind.INTERNAL,
        trace_id=parent.trace_id,
        span_id=otel_id(hashlib.sha256(seed.encode()).hexdigest()[:16], bits=64),
        parent_id=parent.span_id,
        start_ns=parent.start_ns,
        end_ns=min(parent.end_ns, parent.start_ns + latency_ns)
        if parent.end_ns > parent.start_ns
        else parent.start_ns,
        attributes=attributes,
    )


def _content(a: dict[str, Any], record: SpanRecord) -> None:
    if record.kind == "llm":
        if isinstance(record.input, list):
            a["gen_ai.input.messages"] = _json([_message(m) for m in record.input if isinstance(m, dict)])
        if record.output is not None:
            finish = record.attributes.get("finish_reason") or "stop"
            out = {"role": "assistant", "parts": [{"type": "text", "content": str(record.output)}]}
            a["gen_ai.output.messages"] = _json([{**out, "finish_reason": finish}])
        return
    if record.kind == "tool":
        _put(a, "gen_ai.tool.call.arguments", _text(record.input))
        _put(a, "gen_ai.tool.call.result", _text(record.output))
        return
    if record.kind == "retrieval":
        _put(a, "gen_ai.retrieval.query.text", _text(record.input))
    _put(a, "aiapp.input", _text(record.input))
    _put(a, "aiapp.output", _text(record.output))


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI-format message in the semconv's role + parts shape."""
    role = str(message.get("role", "user"))
    parts: list[dict[str, Any]] = []
    body = message.get("content")
    if role == "tool":
        parts.append({"type": "tool_call_response", "id": message.get("tool_call_id"), "response": body})
        return {"role": role, "parts": parts}
    if isinstance(body, str) and body:
        parts.append({"type": "text", "content": body})
    elif isinstance(body, list):
        parts.extend({"type": "text", "content": str(p.get("text", ""))} for p in body if isinstance(p, dict))
    for call in message.get("tool_calls") or []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id") if isinstance(call, dict) else None,
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return {"role": role, "parts": parts}


def _error_type(error: str | None) -> str | None:
    if not error:
        return None
    head = error.split(":", 1)[0].strip()
    return head if head and " " not in head else "_OTHER"


def _secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _put(a: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool | int | float | str):
        a[key] = value
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        a[key] = list(value)
    else:
        a[key] = _json(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# -- OTel objects ---------------------------------------------------------------------------


def resource(extra: Mapping[str, str] | None = None) -> Resource:
    """The OTel resource: ``service.name`` from ``OTEL_SERVICE_NAME`` (default ``aiapp``) and
    ``OTEL_RESOURCE_ATTRIBUTES``, as the SDK reads them."""
    base: dict[str, str] = {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "aiapp"}
    base.update(extra or {})
    return Resource.create(base)


def readable(data: SpanData, *, scope: InstrumentationScope, res: Resource) -> ReadableSpan:
    """A finished SDK span carrying ``data`` with its own ids and times."""
    context = OtelSpanContext(
        data.trace_id, data.span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    parent = None
    if data.parent_id is not None:
        parent = OtelSpanContext(
            data.trace_id, data.parent_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
    status = Status(StatusCode.ERROR, data.status_text) if data.error else Status(StatusCode.UNSET)
    attributes = dict(data.attributes)
    return ReadableSpan(
        name=data.name,
        context=context,
        parent=parent,
        resource=res,
        attributes=attributes,
        events=[Event(name, attrs, timestamp=at) for name, attrs, at in data.events],
        kind=data.kind,
        status=status,
        start_time=data.start_ns,
        end_time=data.end_ns,
        instrumentation_scope=scope,
    )


def aiapp_scope() -> InstrumentationScope:
    """The instrumentation scope of aiapp's spans (named after the semconv schema they follow)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("aiapp")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "0"
    return InstrumentationScope(SCOPE_NAME, ours, SCHEMA_URL)


class OtlpExporter:
    """Sends spans and scores to an OTLP/HTTP endpoint (``tracing.export: otlp``).

    Args:
        endpoint: The traces URL (``http://host:4318/v1/traces``); ``None`` lets the SDK read
            ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``.
        headers: Extra request headers, merged over ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS``.
        content: Export message content (only what the capture policy kept).
        timeout_s: Per-request timeout.
        exporter: Another OTel ``SpanExporter`` to send through (tests, files).
        chunk: Spans per OTLP request. Encoding holds the GIL (~0.1 ms a span here); small
            requests with the GIL released between spans keep the export thread from stalling the
            callers' threads (measured: one request per batch added ~1 ms to p75 under load;
            16-span requests, nothing measurable).
    """

    name = "otlp"

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        content: bool = False,
        timeout_s: float = 10.0,
        exporter: SpanExporter | None = None,
        chunk: int = 16,
    ) -> None:
        self.content = content
        self.chunk = max(1, chunk)
        merged = {**_env_headers(), **dict(headers or {})}
        self._exporter: SpanExporter = exporter or OTLPSpanExporter(
            endpoint=endpoint, headers=merged or None, timeout=timeout_s
        )
        self._scope = aiapp_scope()
        self._resource = resource()

    def export(self, spans: Sequence[SpanRecord], scores: Sequence[ScoreRecord]) -> None:
        """Convert the batch and send it, ``chunk`` spans per OTLP request, yielding the GIL between."""
        batch: list[ReadableSpan] = []
        for data in self._data(spans, scores):
            batch.append(readable(data, scope=self._scope, res=self._resource))
            if len(batch) >= self.chunk:
                self._send(batch)
                batch = []
            time.sleep(0)
        if batch:
            self._send(batch)

    def _send(self, batch: list[ReadableSpan]) -> None:
        result = self._exporter.export(batch)
        time.sleep(0)
        if result is not SpanExportResult.SUCCESS:
            raise ConnectionError(f"the OTLP exporter could not send {len(batch)} span(s)")

    def _data(self, spans: Sequence[SpanRecord], scores: Sequence[ScoreRecord]) -> Iterator[SpanData]:
        for record in spans:
            yield from convert(record, content=self.content)
        for score in scores:
            yield convert_score(score, content=self.content)

    def shutdown(self) -> None:
        """Shut the OTLP session down."""
        self._exporter.shutdown()


def _env_headers() -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` then ``..._TRACES_HEADERS`` (``k=v,k2=v2``, URL-encoded)."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for var in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        for pair in (os.environ.get(var) or "").split(","):
            if "=" in pair:
                key, value = pair.split("=", 1)
                out[unquote(key.strip()).lower()] = unquote(value.strip())
    return out


class ReplayTracer:
    """Emits :class:`SpanData` through a real SDK ``TracerProvider`` with our ids and times.

    For exporters built on an SDK that owns its span processors (Langfuse): the provider's
    processors see an ordinary start and end, while a thread-local id generator hands the
    provider the ids we recorded.

    Args:
        res: The provider's resource.
    """

    def __init__(self, res: Resource | None = None) -> None:
        self._ids = _ReplayIds()
        self.provider = TracerProvider(resource=res or resource(), id_generator=self._ids)

    def emit(self, data: SpanData, *, scope: str, version: str, scope_attributes: Mapping[str, str]) -> None:
        """Start and end one span through the provider."""
        tracer = self.provider.get_tracer(scope, version, attributes=dict(scope_attributes))
        context = None
        if data.parent_id is not None:
            parent = OtelSpanContext(
                data.trace_id, data.parent_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
            )
            context = set_span_in_context(NonRecordingSpan(parent))
        self._ids.next_ids = (data.trace_id, data.span_id)
        try:
            span = tracer.start_span(
                data.name,
                context=context,
                kind=data.kind,
                attributes=data.attributes,
                start_time=data.start_ns,
            )
        finally:
            self._ids.next_ids = None
        for name, attrs, at in data.events:
            span.add_event(name, attrs, timestamp=at)
        if data.error:
            span.set_status(Status(StatusCode.ERROR, data.status_text))
        span.end(end_time=data.end_ns)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Flush the provider's processors."""
        return self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Shut the provider's processors down."""
        self.provider.shutdown()


class _ReplayIds(IdGenerator):
    """Returns the ids set for the span being started on this thread, else random ones."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._random = RandomIdGenerator()

    @property
    def next_ids(self) -> tuple[int, int] | None:
        ids: tuple[int, int] | None = getattr(self._local, "ids", None)
        return ids

    @next_ids.setter
    def next_ids(self, value: tuple[int, int] | None) -> None:
        self._local.ids = value

    def generate_span_id(self) -> int:
        ids = self.next_ids
        return ids[1] if ids else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        ids = self.next_ids
        return ids[0] if ids else self._random.generate_trace_id()
