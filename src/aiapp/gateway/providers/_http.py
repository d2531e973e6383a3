"""The wire under the OpenAI-compatible fast path: JSON and server-sent events over ``aiohttp``.

This is the only module that imports aiohttp. Why hand-written instead of the ``openai`` SDK:
``benchmarks/http_clients.py`` sends the same 2,000 calls at concurrency 16 to a 50 ms stub;
on this project's 2-core machines the SDK reached 0.75–0.78 of ideal throughput, a tuned
``httpx.AsyncClient`` 0.90–0.91 and aiohttp 0.93–0.94. The gateway's async path cannot keep its
throughput goal through the SDK, and the chat-completions wire is small: one JSON POST, or a
POST answered with ``data: {...}`` lines ending in ``data: [DONE]``. JSON goes through
pydantic-core (already a dependency): ~1 µs per stream event against ~8 µs for ``json.loads``.

Sessions (and their connection pools) belong to the event loop that opened them; a
:class:`HttpClient` keeps one per loop. Sync callers run on a persistent loop per thread
(:mod:`aiapp.gateway._sync`), so their pool survives between calls too.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic_core import from_json, to_json

from aiapp.errors import MalformedResponseError
from aiapp.gateway._errors import error_for_status, map_exception, parse_retry_after

if TYPE_CHECKING:
    import aiohttp

_MAX_ERROR_BODY = 64 * 1024
_clients: weakref.WeakSet[HttpClient] = weakref.WeakSet()


class HttpClient:
    """POSTs JSON to one server, with a keep-alive pool per event loop.

    Args:
        headers: Sent with every request (authorization, content type).
        deployment: Named in errors.
    """

    def __init__(self, headers: dict[str, str], *, deployment: str) -> None:
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self.deployment = deployment
        # Strong keys: a pool outlives nothing but its loop, and is dropped (below) once that closes.
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        _clients.add(self)

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            import aiohttp

            self._drop_dead_pools()
            # No total limit beyond aiohttp's 100 per session; the caller's concurrency decides.
            session = aiohttp.ClientSession(headers=self.headers, json_serialize=json.dumps)
            self._sessions[loop] = session
        return session

    def _drop_dead_pools(self) -> None:
        """Forget pools whose loop has closed (``asyncio.run`` per call, test loops)."""
        for loop in [loop for loop in self._sessions if loop.is_closed()]:
            session = self._sessions.pop(loop)
            # Its sockets went with the loop; mark it closed so aiohttp does not warn
            # "Unclosed client session" when it is collected (``_close`` is aiohttp's sync close).
            if session.connector is not None:
                session.connector._close()

    async def post_json(self, url: str, body: dict[str, Any], *, timeout_s: float) -> Any:
        """POST ``body`` and return the decoded JSON reply; errors are mapped to ``ProviderError``."""
        import aiohttp

        try:
            async with self._session().post(
                url, data=to_json(body), timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                if response.status >= 400:
                    raise await self._status_error(response)
                raw = await response.read()
            return _decode(raw)
        except Exception as exc:
            raise map_exception(exc, deployment=self.deployment) from exc

    async def get(self, url: str, *, timeout_s: float) -> bytes:
        """GET ``url`` and return the raw body (``/models``, ``/health``); errors map to ``ProviderError``."""
        import aiohttp

        try:
            async with self._session().get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                if response.status >= 400:
                    raise await self._status_error(response)
                return await response.read()
        except Exception as exc:
            raise map_exception(exc, deployment=self.deployment) from exc

    async def post_events(self, url: str, body: dict[str, Any], *, timeout_s: float) -> AsyncIterator[Any]:
        """POST ``body`` and yield each server-sent ``data:`` event, decoded, until ``[DONE]``.

        ``timeout_s`` bounds the connection and each wait for more bytes, not the whole stream.
        """
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        try:
            async with self._session().post(url, data=to_json(body), timeout=timeout) as response:
                if response.status >= 400:
                    raise await self._status_error(response)
                buffer = b""
                async for piece in response.content.iter_any():
                    buffer += piece
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        event = _event(line)
                        if event is _DONE:
                            return
                        if event is not None:
                            yield event
                if (event := _event(buffer)) is not None and event is not _DONE:
                    yield event
        except Exception as exc:
            raise map_exception(exc, deployment=self.deployment) from exc

    async def _status_error(self, response: aiohttp.ClientResponse) -> Exception:
        raw = await response.content.read(_MAX_ERROR_BODY)
        return error_for_status(
            response.status,
            _error_detail(raw, response.status),
            retry_after=parse_retry_after(response.headers),
            deployment=self.deployment,
        )

    async def aclose(self) -> None:
        """Close the pool of the running loop; pools of other loops are closed by their loops."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

    def __del__(self) -> None:
        # Collected with pools still open (a model dropped without close()): close their sockets
        # synchronously, which needs no loop, rather than leave aiohttp to warn about them.
        for session in self._sessions.values():
            if not session.closed and session.connector is not None:
                session.connector._close()

    def close_all(self) -> None:
        """Close every pool whose loop can still run it (used at interpreter exit)."""
        self._drop_dead_pools()
        for loop, session in list(self._sessions.items()):
            if session.closed:
                continue
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(session.close(), loop)
            else:
                loop.run_until_complete(session.close())
        self._sessions.clear()


_DONE = object()


def _decode(raw: bytes) -> Any:
    try:
        return from_json(raw)
    except ValueError as exc:  # pydantic-core's errors are plain ValueErrors
        raise MalformedResponseError(f"reply is not valid JSON ({exc}): {raw[:200]!r}") from exc


def _event(line: bytes) -> Any:
    """One SSE line: the decoded ``data:`` payload, ``_DONE``, or ``None`` for anything else."""
    line = line.strip()
    if not line.startswith(b"data:"):
        return None  # blank separators, comments (":"), "event:"/"id:" fields
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    try:
        return from_json(data)
    except ValueError as exc:
        raise MalformedResponseError(f"stream event is not valid JSON: {data[:200]!r}") from exc


def _error_detail(raw: bytes, status: int) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return f"HTTP {status}: {text[:500]}" if text else f"HTTP {status}"
    error = body.get("error") if isinstance(body, dict) else None
    message = (
        error.get("message")
        if isinstance(error, dict)
        else error or (body.get("message") if isinstance(body, dict) else None)
    )
    return str(message)[:500] if message else f"HTTP {status}: {str(body)[:500]}"


@atexit.register
def _close_pools() -> None:
    # Without this aiohttp warns "Unclosed client session" at exit for every pool a script left open.
    for client in list(_clients):
        with contextlib.suppress(Exception):  # exiting: nothing useful to do with a failure here
            client.close_all()
