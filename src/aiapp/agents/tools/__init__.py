"""Built-in tools: search over a retriever, a safe calculator, read-only SQL, allowlisted HTTP GET.

- :func:`search_tool` — search any :class:`~aiapp.types.Retriever` (an aiapp index) for citable hits.
- :data:`calculator` — arithmetic parsed with :mod:`ast`, never ``eval``.
- :func:`sql_tool` — one read-only query over a SQLite file (``mode=ro`` + an authorizer).
- :func:`http_get_tool` — GET only URLs on an allowlist; there is no default allowlist.
- :func:`memory_tools` — ``remember``/``recall`` over the agent's long-term memory.
- :func:`build_tools` — the built-in tools by name (``aiapp agent --tools``, eval suites).
"""

from aiapp.agents.tools._build import BUILTIN_TOOLS, build_tools
from aiapp.agents.tools._calculator import calculator, evaluate
from aiapp.agents.tools._http import http_get_tool, is_allowed
from aiapp.agents.tools._memory import memory_tools
from aiapp.agents.tools._search import format_hits, search_tool
from aiapp.agents.tools._sql import connect_read_only, run_query, sql_tool

__all__ = [
    "BUILTIN_TOOLS",
    "build_tools",
    "calculator",
    "connect_read_only",
    "evaluate",
    "format_hits",
    "http_get_tool",
    "is_allowed",
    "memory_tools",
    "run_query",
    "search_tool",
    "sql_tool",
]
