"""HTTP GET restricted to an allowlist — off unless you build it with one.

An allowlist entry is a URL prefix (``https://docs.ollama.com/``) or a bare host (``docs.ollama.com``,
any path, http or https). Redirects are followed by hand, at most ``max_redirects``, and every hop is
checked against the allowlist, so an allowed site cannot bounce the agent somewhere else. Only
``http``/``https`` URLs are fetched, bodies are cut at ``max_bytes``, and text is returned (binary
content types are refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

from aiapp.agents._tool import Tool
from aiapp.errors import InputError, ToolError

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml", "application/javascript")


def is_allowed(url: str, allow: Sequence[str]) -> bool:
    """Whether ``url`` matches an allowlist entry (URL prefix, or bare host)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    for entry in allow:
        if "://" in entry:
            prefix = urlsplit(entry)
            if (
                parts.scheme == prefix.scheme
                and parts.hostname == prefix.hostname
                and parts.port == prefix.port
                and _under(parts.path or "/", prefix.path or "/")
            ):
                return True
        elif parts.hostname == entry.lower().rstrip("/"):
            return True
    return False


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def http_get_tool(
    allow: Sequence[str],
    *,
    name: str = "http_get",
    timeout_s: float = 10.0,
    max_bytes: int = 100_000,
    max_redirects: int = 3,
    requires_approval: bool = False,
) -> Tool:
    """A read-only HTTP GET tool that fetches only allowlisted URLs.

    Args:
        allow: URL prefixes or hosts that may be fetched. Required: an empty list is an error.
        name: The tool's name.
        timeout_s: Per-request timeout.
        max_bytes: Bodies are cut at this many bytes.
        max_redirects: Redirect hops to follow (each checked against ``allow``).
        requires_approval: Ask the agent's approval callback before each fetch.

    Raises:
        InputError: for an empty allowlist or a malformed entry.
    """
    entries = [a.strip() for a in allow if a.strip()]
    if not entries:
        raise InputError("http_get_tool needs an allowlist of URL prefixes or hosts; it is off by default")
    for entry in entries:
        if "://" in entry and urlsplit(entry).scheme not in ("http", "https"):
            raise InputError(f"allowlist entry {entry!r} must be an http(s) URL prefix or a host")
    listed = ", ".join(entries)

    async def fetch(url: str) -> str:
        """Fetch a web page or API response with HTTP GET.

        Args:
            url: The absolute http(s) URL to fetch.
        """
        import httpx

        current = url
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            for _ in range(max_redirects + 1):
                if not is_allowed(current, entries):
                    raise ToolError(f"{current} is not on the allowlist ({listed})", tool=name)
                try:
                    async with client.stream("GET", current, headers={"User-Agent": "aiapp-agent"}) as reply:
                        if reply.is_redirect and "location" in reply.headers:
                            current = urljoin(current, reply.headers["location"])
                            continue
                        kind = reply.headers.get("content-type", "text/plain").lower()
                        if not kind.startswith(_TEXT_TYPES):
                            raise ToolError(f"{current} returned {kind}, not text", tool=name)
                        body = b""
                        async for piece in reply.aiter_bytes():
                            body += piece
                            if len(body) > max_bytes:
                                break
                        text = body[:max_bytes].decode(reply.encoding or "utf-8", errors="replace")
                        cut = f"\n[… cut at {max_bytes} bytes]" if len(body) > max_bytes else ""
                        return f"HTTP {reply.status_code} {current}\n\n{text}{cut}"
                except httpx.HTTPError as exc:
                    raise ToolError(f"GET {current} failed: {type(exc).__name__}: {exc}", tool=name) from exc
        raise ToolError(f"more than {max_redirects} redirects from {url}", tool=name)

    description = f"Fetch a URL with HTTP GET and return its text. Only these are allowed: {listed}."
    return Tool(
        fetch, name=name, description=description, read_only=True, requires_approval=requires_approval
    )
