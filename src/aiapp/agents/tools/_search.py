"""Search over any :class:`~aiapp.types.Retriever` (an aiapp index, a remote search API, a test double)."""

from __future__ import annotations

from aiapp.agents._tool import Tool
from aiapp.types import Hit, Retriever


def format_hits(hits: list[Hit], *, max_chars: int = 1200) -> str:
    """Hits as numbered sources the model can cite: ``[n] source`` then the text."""
    if not hits:
        return "No results."
    blocks = []
    for n, hit in enumerate(hits, 1):
        where = hit.source or hit.doc_id or hit.chunk_id or "unknown source"
        title = f" — {hit.title}" if hit.title else ""
        text = hit.text if len(hit.text) <= max_chars else hit.text[:max_chars] + " …"
        blocks.append(f"[{n}] {where}{title}\n{text.strip()}")
    return "\n\n".join(blocks)


def search_tool(
    retriever: Retriever,
    *,
    name: str = "search",
    k: int = 5,
    description: str | None = None,
    max_chars: int = 1200,
) -> Tool:
    """A read-only tool that searches ``retriever`` and returns numbered, citable hits.

    Args:
        retriever: Anything with ``search(query, *, k) -> list[Hit]``.
        name: The tool's name.
        k: Hits per search.
        description: Replaces the default description (say what the collection holds).
        max_chars: Each hit's text is cut at this many characters.
    """

    def search(query: str) -> str:
        """Search the documents for passages relevant to a query.

        Args:
            query: What to look for, in a few keywords or a question.
        """
        return format_hits(retriever.search(query, k=k), max_chars=max_chars)

    text = (
        description or "Search the documentation for passages relevant to a query; returns numbered sources."
    )
    return Tool(search, name=name, description=text, read_only=True)
