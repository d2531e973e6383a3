"""``remember`` and ``recall``: the model's hands on the agent's long-term memory.

The agent adds these tools itself when it is given a long-term store, scoped to the run's user and
session through the :class:`~aiapp.agents.ToolContext`; they touch nothing but that store.
"""

from __future__ import annotations

from aiapp.agents._tool import Tool, ToolContext, tool
from aiapp.agents.tools._search import format_hits


def memory_tools() -> list[Tool]:
    """The ``remember`` (writes memory) and ``recall`` (read-only) tools."""

    @tool(name="remember")
    def remember(fact: str, context: ToolContext) -> str:
        """Store a fact in long-term memory so it can be recalled in later conversations.

        Args:
            fact: One short, self-contained statement (e.g. "The user's server runs Ubuntu 22.04").
        """
        return f"remembered (id {context.remember(fact)})"

    @tool(name="recall", read_only=True)
    def recall(query: str, context: ToolContext, k: int = 5) -> str:
        """Look up facts stored in long-term memory.

        Args:
            query: What to look for.
            k: How many memories to return.
        """
        return format_hits(context.recall(query, k=k))

    return [remember, recall]
