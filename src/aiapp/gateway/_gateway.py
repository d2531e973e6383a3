"""The Gateway: one front door to every model, with routing, cost accounting and tracing.

>>> gw = Gateway.from_config()                 # configs/aiapp.yaml, or the embedded defaults
>>> reply = gw.complete("hello")               # default route; reply.trace_id names the trace
>>> reply = gw.complete(messages, model="openai", temperature=0)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiapp.config import Deployment, Route, Settings, load_settings
from aiapp.errors import AiappError, ConfigError, ProviderError
from aiapp.gateway._clock import Clock, SystemClock
from aiapp.gateway._context import calling
from aiapp.gateway._health import HealthBoard
from aiapp.gateway._layers import LayerContext, apply_layers, load_redactor
from aiapp.gateway._model import Model
from aiapp.gateway._pricing import PriceTable
from aiapp.gateway._registry import build_model
from aiapp.gateway._route import build_route
from aiapp.gateway._sync import run_sync, sync_iterator, sync_method
from aiapp.tracing import (
    FeedbackRecord,
    SpanRecord,
    Tracer,
    TraceStore,
    build_exporters,
    collecting_annotations,
    record_feedback,
)
from aiapp.types import CallOptions, Completion, Message, StreamChunk, Usage, as_messages

Prompt = str | Message | Sequence[Message]


@dataclass(frozen=True)
class PromptRef:
    """Which prompt produced a call: ``name@version`` and its content hash (recorded in traces)."""

    ref: str
    hash: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of pinging one deployment (``aiapp models --check``)."""

    route: str
    deployment: str
    ok: bool
    latency_ms: float
    detail: str


class Gateway:
    """Routes calls to models, accounts their cost and traces each one.

    Args:
        settings: Loaded settings; ``None`` loads them (see :func:`aiapp.config.load_settings`).
        models: Routes served by given model objects instead of configuration — handy in tests
            (``Gateway(models={"local": FakeModel(["hi"])})``).
        store: Trace store; by default ``$AIAPP_HOME/traces.db`` when tracing is enabled.
        clock: Time for retries, breakers, limits and budget windows (tests pass a ``ManualClock``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        models: dict[str, Model] | None = None,
        store: TraceStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.prices = PriceTable(
            {name: (p.input_per_mtok, p.output_per_mtok) for name, p in self.settings.pricing.items()}
        )
        self._given = dict(models or {})
        self._routes: dict[str, Model] = {}
        self._store = store
        self._tracer: Tracer | None = None
        self._tracer_lock = threading.Lock()
        self.clock: Clock = clock or SystemClock()
        self.health = HealthBoard(self.clock)  # breakers, holds, latencies: shared by all routes

    @classmethod
    def from_config(cls, path: Path | str | None = None) -> Gateway:
        """A gateway built from a config file (default: discovered ``configs/aiapp.yaml``)."""
        return cls(load_settings(path))

    # -- routes ----------------------------------------------------------------------------------

    @property
    def tracer(self) -> Tracer:
        """The tracer (opens the trace store on first use; safe when first calls race)."""
        if self._tracer is not None:
            return self._tracer
        with self._tracer_lock:
            if self._tracer is not None:
                return self._tracer
            tracing = self.settings.tracing
            store = self._store
            if store is None and tracing.enabled:
                store = TraceStore(self.settings.traces_path)
                self._store = store
            capture = tracing.capture_policy(
                guarded=any(r.guards is not None for r in self.settings.routes.values())
            )
            self._tracer = Tracer(
                store if tracing.enabled else None,
                capture=capture,
                redactor=load_redactor() if capture == "redacted" else None,
                config_hash=self.settings.config_hash(),
                exporters=build_exporters(tracing) if tracing.enabled else (),
            )
            return self._tracer

    def route_names(self) -> list[str]:
        """Configured and injected routes."""
        return sorted(set(self.settings.routes) | set(self._given))

    def route_config(self, name: str) -> Route:
        """The configuration of a route; ad-hoc ``provider/model`` names get a one-deployment route."""
        if name in self.settings.routes:
            return self.settings.routes[name]
        if "/" in name:
            return Route(description="ad-hoc", deployments=[Deployment(model=name)])
        known = ", ".join(self.route_names())
        raise ConfigError(
            f"unknown route {name!r} (known: {known}); define it under routes: in the config, "
            "or pass a provider/model name",
            path=str(self.settings.source) if self.settings.source else None,
            field="routes",
        )

    def model(self, name: str | None = None) -> Model:
        """The :class:`Model` serving a route (the default route when ``name`` is ``None``)."""
        name = name or self.settings.default_route
        cached = self._routes.get(name)
        if cached is not None:
            return cached
        config: Route | None = None
        if name in self._given:
            model = self._given[name]
        else:
            config = self.route_config(name)
            model = build_route(name, config, self)
        model = apply_layers(LayerContext(name, config, self.settings, self), model)
        self._routes[name] = model
        return model

    # -- calls -----------------------------------------------------------------------------------

    async def acomplete(
        self,
        prompt: Prompt,
        *,
        model: str | None = None,
        options: CallOptions | None = None,
        prompt_ref: PromptRef | None = None,
        metadata: dict[str, Any] | None = None,
        **params: Any,
    ) -> Completion:
        """Call a route and wait for the reply (sync: :meth:`complete`).

        Args:
            prompt: A string (one user message), a message, or a list of messages.
            model: Route name or ``provider/model``; default route when ``None``.
            options: Generation options; keyword ``params`` (``temperature=0``) are merged on top.
            prompt_ref: The prompt version that produced these messages, for the trace.
            metadata: Extra attributes stored on the trace.

        Raises:
            ProviderError: when the route's deployments fail (``AllDeploymentsFailedError`` lists each).
            ConfigError: for an unknown route or a bad deployment.
        """
        call, target, opts = self._begin(prompt, model, options, params, prompt_ref, metadata)
        with collecting_annotations() as notes, calling(call.route, prompt_ref, metadata):
            try:
                completion = await target.acomplete(call.messages, opts)
            except AiappError as exc:
                call.failed(exc, notes)
                raise
        return call.finished(completion, notes)

    async def astream(
        self,
        prompt: Prompt,
        *,
        model: str | None = None,
        options: CallOptions | None = None,
        prompt_ref: PromptRef | None = None,
        metadata: dict[str, Any] | None = None,
        **params: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Stream a reply, chunk by chunk as it arrives (sync: :meth:`stream`).

        The trace is written when the stream ends (or fails).
        """
        call, target, opts = self._begin(prompt, model, options, params, prompt_ref, metadata)
        with collecting_annotations() as notes, calling(call.route, prompt_ref, metadata):
            try:
                async for chunk in target.astream(call.messages, opts):
                    call.chunk(chunk)
                    yield chunk
            except AiappError as exc:
                call.failed(exc, notes)
                raise
            except (asyncio.CancelledError, GeneratorExit):
                # The caller went away (a dropped client, a ``break``): the call still gets its span.
                call.failed(AiappError(f"cancelled by the caller after {len(call.text)} chunks"), notes)
                raise
        call.finished(call.streamed(notes, target.name), notes)

    complete = sync_method(acomplete)
    stream = sync_iterator(astream)

    def _begin(
        self,
        prompt: Prompt,
        model: str | None,
        options: CallOptions | None,
        params: dict[str, Any],
        prompt_ref: PromptRef | None,
        metadata: dict[str, Any] | None,
    ) -> tuple[_Call, Model, CallOptions | None]:
        route = model or self.settings.default_route
        target = self.model(route)
        call = _Call(
            gateway=self,
            route=route,
            messages=as_messages(prompt),  # type: ignore[arg-type]
            prompt_ref=prompt_ref,
            metadata=metadata,
            ids=self.tracer.start(),
        )
        return call, target, _options(options, params)

    def check(self, routes: Sequence[str] | None = None) -> list[CheckResult]:
        """Ping every deployment of the given routes (all by default) with a one-token request.

        A model with an ``ahealth()`` probe (vLLM: ``GET /health`` and its model list) is asked
        that instead, which spends no tokens.
        """
        results = []
        for route in routes or self.route_names():
            if route in self._given:
                pairs = [(self._given[route].name, self._given[route])]
            else:
                pairs = [(d.label, build_model(d, self.prices)) for d in self.route_config(route).deployments]
            for label, model in pairs:
                t0 = time.perf_counter()
                try:
                    probe = getattr(model, "ahealth", None)
                    if callable(probe):
                        ok, detail = True, str(run_sync(probe()))
                    else:
                        model.complete([Message.user("ping")], CallOptions(max_tokens=1, timeout_s=15))
                        ok, detail = True, "ok"
                except ProviderError as exc:
                    ok, detail = False, f"{type(exc).__name__}: {exc.detail}"
                except AiappError as exc:
                    ok, detail = False, str(exc)
                results.append(CheckResult(route, label, ok, (time.perf_counter() - t0) * 1000.0, detail))
        return results

    def feedback(
        self,
        trace_id: str,
        score: str | float | int,
        comment: str | None = None,
        *,
        user: str | None = None,
    ) -> FeedbackRecord:
        """Store a user's score and comment against a stored trace and export it like any score.

        Returns:
            What was stored (the full trace id, the parsed score, the comment as captured).

        Raises:
            InputError: an unknown trace id or a score that is neither ``+1``/``-1`` nor in ``[0, 1]``.
            ConfigError: tracing is disabled (no store to keep feedback in).
        """
        return record_feedback(self.tracer, trace_id, score, comment=comment, user=user)

    def close(self) -> None:
        """Close provider connections and the trace store."""
        run_sync(self.aclose())

    async def aclose(self) -> None:
        """Async :meth:`close` (async HTTP clients are closed on the loop they belong to)."""
        for model in self._routes.values():
            await model.aclose()
        self._routes.clear()
        if self._tracer is not None:
            self._tracer.shutdown()
        if self._store is not None:
            self._store.close()
            self._store = None
            self._tracer = None

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tracing ---------------------------------------------------------------------------------

    def _record(
        self,
        ids: tuple[str, str, str | None],
        route: str,
        messages: list[Message],
        started: float,
        t0: float,
        completion: Completion | None,
        error: AiappError | None,
        prompt_ref: PromptRef | None,
        metadata: dict[str, Any] | None,
        *,
        tried: list[str] | None = None,
    ) -> None:
        tracer = self.tracer
        if tracer.store is None:
            return
        if completion is not None:
            deployments = list(completion.tried) or ([completion.deployment] if completion.deployment else [])
        else:
            deployments = list(tried or _failed_deployments(error))
        usage = completion.usage if completion is not None else Usage()
        tracer.write(
            SpanRecord(
                span_id=ids[1],
                trace_id=ids[0],
                parent_id=ids[2],
                kind="llm",
                name=route,
                started_at=started,
                duration_ms=(time.perf_counter() - t0) * 1000.0,
                status="ok" if error is None else "error",
                error=None if error is None else f"{type(error).__name__}: {error}",
                route=route,
                model=completion.deployment or completion.model if completion is not None else None,
                deployments=deployments,
                attempts=completion.attempts if completion is not None else len(deployments),
                input_tokens=usage.input_tokens if completion is not None else None,
                output_tokens=usage.output_tokens if completion is not None else None,
                cost_usd=usage.cost_usd if completion is not None else None,
                cache_hit=completion.cache_hit if completion is not None else False,
                prompt_ref=prompt_ref.ref if prompt_ref else None,
                prompt_hash=prompt_ref.hash if prompt_ref else None,
                input=[m.to_openai() for m in messages],
                output=_output(completion),
                attributes=dict(metadata or {})
                | (
                    {"finish_reason": completion.finish_reason}
                    if completion and completion.finish_reason
                    else {}
                ),
            )
        )


@dataclass
class _Call:
    """One gateway call in flight: its ids and timing, and how to record it when it ends."""

    gateway: Gateway
    route: str
    messages: list[Message]
    prompt_ref: PromptRef | None
    metadata: dict[str, Any] | None
    ids: tuple[str, str, str | None]
    started: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    text: list[str] = field(default_factory=list)
    last: StreamChunk | None = None

    def _attributes(self, notes: dict[str, Any]) -> dict[str, Any]:
        return {**(self.metadata or {}), **notes}

    def chunk(self, chunk: StreamChunk) -> None:
        """Remember a streamed chunk (the trace keeps the assembled reply)."""
        self.text.append(chunk.delta)
        self.last = chunk

    def streamed(self, notes: dict[str, Any], name: str) -> Completion:
        """The finished stream as a completion."""
        done = _streamed(self.route, notes.get("tried", []), self.text, self.last, name)
        return done.model_copy(update={"cache_hit": notes.get("cache") in ("hit", "semantic_hit")})

    def failed(self, error: AiappError, notes: dict[str, Any]) -> None:
        """Record a failed call."""
        tried = notes.pop("tried", [])
        self.gateway._record(
            self.ids,
            self.route,
            self.messages,
            self.started,
            self.t0,
            None,
            error,
            self.prompt_ref,
            self._attributes(notes),
            tried=tried,
        )

    def finished(self, completion: Completion, notes: dict[str, Any]) -> Completion:
        """Stamp the trace id and route on a completion and record it."""
        tried = notes.pop("tried", None)
        completion = completion.model_copy(update={"trace_id": self.ids[0], "route": self.route})
        self.gateway._record(
            self.ids,
            self.route,
            self.messages,
            self.started,
            self.t0,
            completion,
            None,
            self.prompt_ref,
            self._attributes(notes),
            tried=tried,
        )
        return completion


def _options(options: CallOptions | None, params: dict[str, Any]) -> CallOptions | None:
    if not params:
        return options
    extra = CallOptions.model_validate(params)
    return extra if options is None else options.merged(extra)


def _output(completion: Completion | None) -> str | None:
    if completion is None:
        return None
    if completion.tool_calls:
        calls = ", ".join(f"{c.name}({c.arguments})" for c in completion.tool_calls)
        return f"{completion.text}\n[tool calls] {calls}".strip()
    return completion.text


def _failed_deployments(error: AiappError | None) -> list[str]:
    failures = getattr(error, "failures", None)
    if failures:
        return [f.deployment for f in failures]
    deployment = getattr(error, "deployment", None)
    return [deployment] if deployment else []


def _streamed(
    route: str, tried: list[str], text: list[str], last: StreamChunk | None, name: str
) -> Completion:
    return Completion(
        text="".join(text),
        tool_calls=last.tool_calls if last else (),
        finish_reason=(last.finish_reason if last and last.finish_reason else "stop"),
        model=name,
        usage=last.usage if last and last.usage else Usage(),
        route=route,
        deployment=tried[-1] if tried else name,
        attempts=max(1, len(tried)),
        tried=tuple(tried),
    )
