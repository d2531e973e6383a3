"""Targets: what an eval runs each case through (the RAG app, a prompt on a route, a callable, an agent).

A target turns a :class:`Case` into an :class:`Output`. Its :attr:`~Target.fingerprint` hashes
everything that decides the outputs (prompt content hash, route config, index version), so a
resumed run never mixes results from a changed system.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import json
import time
from collections.abc import Callable
from typing import Any

from aiapp.errors import ConfigError, InputError
from aiapp.evals._score import Case, Output
from aiapp.evals._suite import TargetSpec
from aiapp.gateway import Gateway
from aiapp.types import Hit


class Target:
    """Base class: run one case.

    Attributes:
        description: One line for reports.
        fingerprint: Hash of what decides the outputs.
        route: The model route the target calls (for cost estimates), when there is one.
    """

    description: str = "target"
    fingerprint: str = ""
    route: str | None = None

    async def arun(self, case: Case) -> Output:
        """Produce the output for one case. Provider errors propagate (the runner retries 429s)."""
        raise NotImplementedError


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _route_hash(gateway: Gateway, route: str | None) -> str:
    name = route or gateway.settings.default_route
    if name in gateway.settings.routes:
        return _hash(name, gateway.settings.routes[name].model_dump(mode="json"))
    return _hash(name)


class CallableTarget(Target):
    """``module:function`` called with the case input (and the case, if it takes two arguments).

    The function may be sync or async and return a string, a mapping of :class:`Output` fields,
    or an :class:`Output`.
    """

    def __init__(self, ref: str) -> None:
        module_name, _, attr = ref.partition(":")
        if not module_name or not attr:
            raise ConfigError(
                f"callable target {ref!r} must look like 'package.module:function'", field="target.callable"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import {module_name!r} for target {ref!r}: {exc}", field="target.callable"
            ) from exc
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise ConfigError(f"{ref!r} is not a callable", field="target.callable")
        self.fn: Callable[..., Any] = fn
        self.description = f"callable {ref}"
        source = inspect.getsource(fn) if inspect.isfunction(fn) else ref
        self.fingerprint = _hash(ref, source)
        self._two_args = len(inspect.signature(fn).parameters) >= 2

    async def arun(self, case: Case) -> Output:
        """Call the function and coerce its result."""
        args = (case.input, case) if self._two_args else (case.input,)
        started = time.perf_counter()
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(*args)
        else:
            result = await asyncio.to_thread(self.fn, *args)
        latency = (time.perf_counter() - started) * 1000.0
        if isinstance(result, Output):
            out = result
        elif isinstance(result, dict):
            out = Output.model_validate(result)
        else:
            out = Output(text=str(result))
        if not out.latency_ms:
            out.latency_ms = latency
        return out


class PromptTarget(Target):
    """A prompt ref rendered with the case's input, sent to a route (no retrieval)."""

    def __init__(self, gateway: Gateway, spec: TargetSpec) -> None:
        from aiapp.prompts import PromptRegistry

        if not spec.prompt:
            raise ConfigError(
                "a prompt target needs `prompt:` (e.g. support_answer@production)", field="target.prompt"
            )
        self.gateway = gateway
        self.prompt = PromptRegistry.from_settings(gateway.settings).get(spec.prompt)
        self.route = spec.route or self.prompt.route or None
        self.description = f"prompt {self.prompt.ref} route={self.route or gateway.settings.default_route}"
        self.fingerprint = _hash(
            "prompt", self.prompt.ref, self.prompt.content_hash, _route_hash(gateway, self.route)
        )
        self.params = spec.params

    async def arun(self, case: Case) -> Output:
        """Render and call."""
        variables = dict(case.input) if isinstance(case.input, dict) else {"question": case.input}
        messages = self.prompt.render(**variables)
        reply = await self.gateway.acomplete(
            messages, model=self.route, prompt_ref=self.prompt.prompt_ref(), **self.params
        )
        return Output(
            text=reply.text, usage=reply.usage, latency_ms=reply.latency_ms, trace_id=reply.trace_id
        )


class RagTarget(Target):
    """The RAG app over an index: retrieval hits and the answer both go to the scorers."""

    def __init__(self, gateway: Gateway, spec: TargetSpec) -> None:
        from aiapp.apps import RAGApp
        from aiapp.retrieval import Index

        index = (
            Index.open(spec.index, settings=gateway.settings)
            if spec.index
            else Index.open(settings=gateway.settings)
        )
        kwargs: dict[str, Any] = {"gateway": gateway, "retriever": index, "k": spec.k}
        if spec.prompt:
            kwargs["prompt"] = spec.prompt
        if spec.route:
            kwargs["model"] = spec.route
        self.app = RAGApp(**kwargs)
        self.route = spec.route
        prompt = getattr(self.app, "prompt", None)
        prompt_id = (getattr(prompt, "ref", None), getattr(prompt, "content_hash", None))
        version = getattr(index, "corpus_version", None) or getattr(
            getattr(index, "manifest", None), "corpus_version", None
        )
        self.description = (
            f"rag {prompt_id[0] or ''} route={spec.route or gateway.settings.default_route} k={spec.k}"
        )
        self.fingerprint = _hash("rag", prompt_id, version, spec.k, _route_hash(gateway, spec.route))

    async def arun(self, case: Case) -> Output:
        """Ask the app."""
        answer = await self.app.aask(case.question)
        hits: list[Hit] = list(getattr(answer, "hits", None) or [])
        return Output(
            text=answer.text,
            hits=hits,
            usage=answer.usage,
            latency_ms=getattr(answer, "latency_ms", 0.0),
            trace_id=answer.trace_id,
            data={"citations": [c.model_dump(mode="json") for c in getattr(answer, "citations", [])]},
        )


class AgentTarget(Target):
    """An agent with built-in tools (``tools``) on ``route``; stop reason and steps go to ``data``."""

    def __init__(self, gateway: Gateway, spec: TargetSpec) -> None:
        from aiapp.agents import build_agent

        self.agent = build_agent(
            gateway, route=spec.route, tools=spec.tools or [], index=spec.index, k=spec.k, **spec.params
        )
        self.route = spec.route
        self.description = f"agent tools={','.join(spec.tools or []) or 'none'} route={spec.route or gateway.settings.default_route}"
        self.fingerprint = _hash("agent", spec.model_dump(mode="json"), _route_hash(gateway, spec.route))

    async def arun(self, case: Case) -> Output:
        """Run the agent on the case's task."""
        run = await self.agent.arun(case.question)
        return Output(**run.eval_fields())


def build_target(spec: TargetSpec, gateway: Gateway) -> Target:
    """The target a suite describes."""
    kind = spec.resolved_kind
    if kind == "callable":
        return CallableTarget(spec.callable or "")
    if kind == "prompt":
        return PromptTarget(gateway, spec)
    if kind == "rag":
        return RagTarget(gateway, spec)
    if kind == "agent":
        return AgentTarget(gateway, spec)
    raise InputError(f"unknown target kind {kind!r}")
