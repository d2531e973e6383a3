"""Built-in tools by name — what ``aiapp agent --tools`` and eval suites (``tools: [...]``) use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiapp.agents._tool import Tool
from aiapp.agents.tools._calculator import calculator
from aiapp.agents.tools._http import http_get_tool
from aiapp.agents.tools._search import search_tool
from aiapp.agents.tools._sql import sql_tool
from aiapp.errors import InputError
from aiapp.types import Retriever

BUILTIN_TOOLS = ("search", "calculator", "sql", "http")
"""Names :func:`build_tools` knows."""


def build_tools(
    names: Sequence[str],
    *,
    retriever: Retriever | None = None,
    k: int = 5,
    db: Path | str | None = None,
    allow_urls: Sequence[str] = (),
    approve_http: bool = True,
    approve_all: bool = False,
) -> list[Tool]:
    """Build built-in tools from their names.

    Args:
        names: Any of ``search``, ``calculator``, ``sql``, ``http``.
        retriever: What ``search`` searches (an aiapp index).
        k: Hits per search.
        db: The SQLite file ``sql`` reads.
        allow_urls: What ``http`` may fetch; it is refused without an allowlist.
        approve_http: ``http`` asks the agent's approver before each fetch.
        approve_all: Every tool asks the approver before each call.

    Raises:
        InputError: for an unknown name, or a tool missing what it needs.
    """
    unknown = sorted(set(names) - set(BUILTIN_TOOLS))
    if unknown:
        raise InputError(f"unknown tools {unknown}; choose from {', '.join(BUILTIN_TOOLS)}")
    out: list[Tool] = []
    for name in dict.fromkeys(names):
        if name == "calculator":
            out.append(calculator)
        elif name == "search":
            if retriever is None:
                raise InputError("the search tool needs an index to search")
            out.append(search_tool(retriever, k=k))
        elif name == "sql":
            if db is None:
                raise InputError("the sql tool needs a SQLite file")
            out.append(sql_tool(db))
        else:
            if not allow_urls:
                raise InputError(
                    "the http tool is off until it is given an allowlist of URL prefixes or hosts"
                )
            out.append(http_get_tool(allow_urls, requires_approval=approve_http))
    if approve_all:
        out = [
            Tool(t.fn, name=t.name, description=t.description, read_only=t.read_only, requires_approval=True)
            for t in out
        ]
    return out
