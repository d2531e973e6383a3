"""Build an agent from names — what ``aiapp agent`` and eval suites (``tools: [search, calculator]``) use."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiapp.agents._agent import Agent
from aiapp.agents._run import AgentLimits, Approver
from aiapp.agents.tools import build_tools
from aiapp.errors import InputError
from aiapp.gateway import Gateway
from aiapp.types import Retriever


def open_retriever(gateway: Gateway, name: str | None = None, *, required: bool = True) -> Retriever | None:
    """The retrieval index ``name`` (default: ``retrieval.default_corpus``), its searches traced.

    Args:
        gateway: Supplies the settings and the tracer (searches nest under the agent's tool calls).
        name: The index name.
        required: Raise when the index was never built (else return ``None``).

    Raises:
        InputError: when ``required`` and the index has not been built.
    """
    from aiapp.retrieval import Index

    index = Index.open(name, gateway.settings, tracer=gateway.tracer)
    if index.manifest is None:
        if required:
            raise InputError(f"index {index.name!r} has not been built yet: run `aiapp index {index.name}`")
        return None
    return index


def build_agent(
    gateway: Gateway,
    *,
    route: str | None = None,
    tools: Sequence[str] = (),
    index: str | None = None,
    retriever: Retriever | None = None,
    k: int = 5,
    db: Path | str | None = None,
    allow_urls: Sequence[str] = (),
    approve_all: bool = False,
    approval: Approver | None = None,
    **options: Any,
) -> Agent:
    """An :class:`Agent` with built-in tools chosen by name.

    A ``search`` tool searches ``retriever``, or the index ``index`` opened with the gateway's
    settings. On a route whose model cannot call tools, ``search`` is prefetched with the task so
    the model (e.g. the offline baseline) answers from its results.

    Args:
        gateway: The gateway.
        route: The route (default: the gateway's default route).
        tools: Built-in tool names (see :data:`aiapp.agents.tools.BUILTIN_TOOLS`).
        index: The index ``search`` uses when no ``retriever`` is given.
        retriever: What ``search`` searches.
        k: Hits per search.
        db: The SQLite file for ``sql``.
        allow_urls: The allowlist for ``http`` (required for it).
        approve_all: Every tool call needs approval.
        approval: The approval callback.
        **options: :class:`AgentLimits` fields (``max_steps=5``) and other :class:`Agent` arguments
            (``system=``, ``name=``).

    Raises:
        InputError: for an unknown tool or option, or a tool missing what it needs.
    """
    if "search" in tools and retriever is None:
        retriever = open_retriever(gateway, index)
    built = build_tools(
        list(tools), retriever=retriever, k=k, db=db, allow_urls=allow_urls, approve_all=approve_all
    )
    limit_fields = {key: options.pop(key) for key in list(options) if key in AgentLimits.model_fields}
    allowed = set(inspect.signature(Agent).parameters) - {"gateway", "model", "tools", "approval"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InputError(f"unknown agent options {unknown}")
    name = route or gateway.settings.default_route
    if "prefetch" not in options and "search" in tools and not gateway.model(name).info.supports_tools:
        options["prefetch"] = ["search"]
    given: AgentLimits = options.pop("limits", None) or AgentLimits()
    limits = AgentLimits.model_validate({**given.model_dump(), **limit_fields})
    return Agent(gateway=gateway, model=name, tools=built, approval=approval, limits=limits, **options)
