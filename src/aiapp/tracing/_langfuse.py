"""Langfuse: traces, generations and scores through the ``langfuse`` SDK (5.x, OpenTelemetry-based).

The only module of ours that imports ``langfuse`` (the ``langfuse`` extra). Spans are converted
as for OTLP (:mod:`aiapp.tracing._otel`: same ids, tree, times and GenAI attributes) and gain
Langfuse's own observation attributes (``langfuse.observation.type`` ``generation`` with model,
usage and cost details, prompt name and version, trace name, user and session). They are emitted
through a private ``TracerProvider`` that the SDK's ``Langfuse`` client owns the span processor
of, so the SDK's exporter sends them (OTLP/HTTP to ``{host}/api/public/otel/v1/traces`` with
Basic auth). Scores and feedback go through ``Langfuse.create_score`` (the SDK's score queue,
``POST /api/public/scores``). Nothing is installed globally: the global OTel tracer provider is
left alone.

Keys and host come from ``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY`` and ``LANGFUSE_HOST``
(or ``LANGFUSE_BASE_URL``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langfuse import Langfuse, LangfuseOtelSpanAttributes
from langfuse._client.constants import LANGFUSE_TRACER_NAME
from langfuse._version import __version__ as LANGFUSE_VERSION

from aiapp.errors import ConfigError
from aiapp.tracing._export import ScoreRecord
from aiapp.tracing._otel import ReplayTracer, SpanData, convert, convert_score, resource
from aiapp.tracing._store import SpanRecord

A = LangfuseOtelSpanAttributes

#: Our span kinds → Langfuse observation types.
_TYPES = {
    "llm": "generation",
    "agent": "agent",
    "tool": "tool",
    "retrieval": "retriever",
    "guard": "guardrail",
    "evaluation": "evaluator",
    "app": "chain",
}


def langfuse_settings(environ: Mapping[str, str] | None = None) -> tuple[str, str, str]:
    """``(public_key, secret_key, host)`` from ``LANGFUSE_*``.

    Raises:
        ConfigError: naming the missing variable.
    """
    env = os.environ if environ is None else environ
    public = env.get("LANGFUSE_PUBLIC_KEY")
    secret = env.get("LANGFUSE_SECRET_KEY")
    host = env.get("LANGFUSE_HOST") or env.get("LANGFUSE_BASE_URL")
    for name, value in (
        ("LANGFUSE_PUBLIC_KEY", public),
        ("LANGFUSE_SECRET_KEY", secret),
        ("LANGFUSE_HOST", host),
    ):
        if not value:
            raise ConfigError(f"Langfuse needs {name} in the environment", field="tracing.export")
    assert public and secret and host
    return public, secret, host.rstrip("/")


def client(public_key: str, secret_key: str, host: str, **options: Any) -> Langfuse:
    """A Langfuse client that never touches the global OTel provider (quiet: ``debug=False``)."""
    return Langfuse(public_key=public_key, secret_key=secret_key, base_url=host, debug=False, **options)


class LangfuseExporter:
    """Sends spans as Langfuse observations and scores as Langfuse scores (``tracing.export: langfuse``).

    Args:
        public_key: The project's public key (``pk-lf-...``).
        secret_key: Its secret key.
        host: The Langfuse base URL.
        content: Export inputs and outputs (only what the capture policy kept).
        flush_interval_s: How often the SDK's processor sends.
        timeout_s: Per-request timeout.
    """

    name = "langfuse"

    def __init__(
        self,
        *,
        public_key: str,
        secret_key: str,
        host: str,
        content: bool = False,
        flush_interval_s: float = 1.0,
        timeout_s: int = 10,
    ) -> None:
        self.content = content
        self.public_key = public_key
        self._replay, self.client = _shared(public_key, secret_key, host, flush_interval_s, timeout_s)

    @classmethod
    def from_env(cls, *, content: bool = False) -> LangfuseExporter:
        """An exporter configured from ``LANGFUSE_*`` (raises :class:`ConfigError` when unset)."""
        public, secret, host = langfuse_settings()
        return cls(public_key=public, secret_key=secret, host=host, content=content)

    def export(self, spans: Sequence[SpanRecord], scores: Sequence[ScoreRecord]) -> None:
        """Emit each span through the SDK's processor and queue each score."""
        for record in spans:
            for data in convert(record, content=self.content):
                data.attributes.update(self._observation(record, data))
                self._replay.emit(
                    data,
                    scope=LANGFUSE_TRACER_NAME,
                    version=LANGFUSE_VERSION,
                    scope_attributes={"public_key": self.public_key},
                )
            time.sleep(0)  # let callers' threads have the GIL between spans
        for score in scores:
            data = convert_score(score, content=self.content)
            data.attributes[A.OBSERVATION_TYPE] = "evaluator"
            self._replay.emit(
                data,
                scope=LANGFUSE_TRACER_NAME,
                version=LANGFUSE_VERSION,
                scope_attributes={"public_key": self.public_key},
            )
            self.client.create_score(
                name=score.name,
                value=float(score.value),
                trace_id=f"{data.trace_id:032x}",
                observation_id=f"{data.parent_id:016x}" if score.span_id and data.parent_id else None,
                data_type="NUMERIC",
                comment=score.comment if self.content else None,
                metadata={"source": score.source},
                timestamp=datetime.fromtimestamp(score.timestamp, tz=UTC),
            )

    def flush(self) -> None:
        """Send what the SDK holds (spans and scores) now."""
        self.client.flush()

    def shutdown(self) -> None:
        """Flush. The SDK keeps one client per public key for the process (it shuts it down at
        exit), so a later exporter with the same key reuses this one rather than a dead one."""
        self.client.flush()

    def _observation(self, record: SpanRecord, data: SpanData) -> dict[str, Any]:
        kind = str(data.attributes.get("aiapp.span.kind", record.kind))
        out: dict[str, Any] = {A.OBSERVATION_TYPE: _TYPES.get(kind, "span")}
        if data.span_id != _own_id(record, data):
            return out  # a guard child span: the type is enough
        if record.status == "error":
            out[A.OBSERVATION_LEVEL] = "ERROR"
            if self.content and record.error:
                out[A.OBSERVATION_STATUS_MESSAGE] = record.error
        if record.parent_id is None:
            out[A.TRACE_NAME] = record.name
            for key, attr in (("user", A.TRACE_USER_ID), ("session", A.TRACE_SESSION_ID)):
                value = record.attributes.get(key)
                if isinstance(value, str) and value:
                    out[attr] = value
        if record.kind == "llm":
            if record.model:
                out[A.OBSERVATION_MODEL] = record.model
            usage = {
                k: v
                for k, v in (("input", record.input_tokens), ("output", record.output_tokens))
                if v is not None
            }
            if usage:
                usage["total"] = sum(usage.values())
                out[A.OBSERVATION_USAGE_DETAILS] = json.dumps(usage)
            if record.cost_usd is not None:
                out[A.OBSERVATION_COST_DETAILS] = json.dumps({"total": record.cost_usd})
        if record.prompt_ref and "@" in record.prompt_ref:
            name, _, version = record.prompt_ref.partition("@")
            number = version.lstrip("v")
            if number.isdigit():
                out[A.OBSERVATION_PROMPT_NAME] = name
                out[A.OBSERVATION_PROMPT_VERSION] = int(number)
        if self.content:
            if record.input is not None:
                out[A.OBSERVATION_INPUT] = _dump(record.input)
            if record.output is not None:
                out[A.OBSERVATION_OUTPUT] = _dump(record.output)
        return out


_CLIENTS: dict[str, tuple[ReplayTracer, Langfuse, str]] = {}
_CLIENTS_LOCK = threading.Lock()


def _shared(
    public_key: str, secret_key: str, host: str, flush_interval_s: float, timeout_s: int
) -> tuple[ReplayTracer, Langfuse]:
    """One provider + client per public key: the SDK's resources are a per-key singleton, so a
    second client would silently reuse the first one's tracer provider."""
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(public_key)
        if found is not None:
            if found[2] != host:
                raise ConfigError(
                    f"Langfuse key {public_key} is already exporting to {found[2]}; one process "
                    f"cannot also send it to {host}",
                    field="tracing.export",
                )
            return found[0], found[1]
        replay = ReplayTracer(resource())
        sdk = client(
            public_key,
            secret_key,
            host,
            tracing_enabled=True,
            tracer_provider=replay.provider,
            should_export_span=lambda span: True,
            flush_interval=flush_interval_s,
            timeout=timeout_s,
        )
        _CLIENTS[public_key] = (replay, sdk, host)
        return replay, sdk


def _own_id(record: SpanRecord, data: SpanData) -> int:
    from aiapp.tracing._otel import otel_id

    return otel_id(record.span_id, bits=64)


def _dump(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class RemotePrompt:
    """One prompt version as Langfuse holds it.

    Attributes:
        name: The prompt's name.
        version: Langfuse's version number (aiapp's ``vN`` maps to ``N``).
        messages: Chat messages (``role``/``content``); one ``user`` message for a text prompt.
        config: The version's config (aiapp stores its prompt file under ``config["aiapp"]``).
        labels: Deployment labels on this version (``latest`` is Langfuse's own and left out).
    """

    name: str
    version: int
    messages: list[dict[str, str]]
    config: dict[str, Any]
    labels: list[str]


class LangfusePrompts:
    """Langfuse's prompt API through the SDK: list, read and create versions, move labels.

    Args:
        public_key: The project's public key.
        secret_key: Its secret key.
        host: The Langfuse base URL.
    """

    def __init__(self, *, public_key: str, secret_key: str, host: str, timeout_s: float = 30.0) -> None:
        from langfuse.api import LangfuseAPI

        self.host = host
        # The SDK's REST client on its own (it makes its own HTTP client): a ``Langfuse`` client
        # would share the per-key singleton (and its host) with any exporter in this process.
        self._api = LangfuseAPI(
            base_url=host,
            username=public_key,
            password=secret_key,
            x_langfuse_sdk_name="python",
            x_langfuse_sdk_version=LANGFUSE_VERSION,
            x_langfuse_public_key=public_key,
            timeout=timeout_s,
        )

    @classmethod
    def from_env(cls) -> LangfusePrompts:
        """Configured from ``LANGFUSE_*`` (raises :class:`ConfigError` when unset)."""
        public, secret, host = langfuse_settings()
        return cls(public_key=public, secret_key=secret, host=host)

    def names(self) -> dict[str, list[int]]:
        """Every prompt name with its version numbers."""
        out: dict[str, list[int]] = {}
        page = 1
        while True:
            listing = self._api.prompts.list(page=page, limit=100)
            for meta in listing.data:
                out[meta.name] = sorted(meta.versions)
            if page >= (listing.meta.total_pages or 1):
                return out
            page += 1

    def get(self, name: str, version: int) -> RemotePrompt | None:
        """One version, or ``None`` when Langfuse has no such prompt or version."""
        from langfuse.api.core import ApiError

        try:
            found = self._api.prompts.get(name, version=version)
        except ApiError as exc:
            if exc.status_code == 404:
                return None
            raise
        body = found.prompt
        if isinstance(body, str):
            messages = [{"role": "user", "content": body}]
        else:
            messages = [
                {"role": str(getattr(m, "role", "user")), "content": str(getattr(m, "content", ""))}
                for m in body
            ]
        config = found.config if isinstance(found.config, dict) else {}
        labels = [label for label in found.labels if label != "latest"]
        return RemotePrompt(
            name=found.name, version=found.version, messages=messages, config=config, labels=labels
        )

    def create(
        self,
        name: str,
        messages: Sequence[Mapping[str, str]],
        *,
        config: Mapping[str, Any],
        labels: Sequence[str],
        commit_message: str,
    ) -> int:
        """Create the next version of ``name``; returns the version number Langfuse gave it."""
        from langfuse.api import ChatMessage, CreateChatPromptRequest

        request = CreateChatPromptRequest(
            name=name,
            prompt=[ChatMessage(role=m["role"], content=m["content"]) for m in messages],
            config=dict(config),
            type="chat",
            labels=list(labels),
            commit_message=commit_message,
        )
        return int(self._api.prompts.create(request=request).version)

    def set_labels(self, name: str, version: int, labels: Sequence[str]) -> None:
        """Put exactly ``labels`` on a version (Langfuse moves them off other versions)."""
        self._api.prompt_version.update(name, version, new_labels=list(labels))

    def close(self) -> None:
        """Drop the client (its connections close with it)."""
        del self._api
