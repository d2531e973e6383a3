"""The switch that keeps tests off real providers (pydantic-ai's ``ALLOW_MODEL_REQUESTS``, for aiapp).

Providers call :func:`check_provider_call` before sending anything. While calls are blocked —
``aiapp.testing.block_provider_calls()``, or ``AIAPP_BLOCK_PROVIDER_CALLS=1`` in the environment —
any call to a provider raises :class:`~aiapp.errors.ProviderCallBlockedError` before a byte leaves
the process. Calls to loopback servers (the stub server, a local vLLM) stay allowed unless
``allow_loopback=False``, since that is how provider code is tested without a network.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from urllib.parse import urlsplit

from aiapp.errors import ProviderCallBlockedError

_lock = threading.Lock()
_blocks: list[bool] = []  # one entry per active block: its allow_loopback


def push_block(*, allow_loopback: bool) -> None:
    """Start blocking provider calls (nestable; see :func:`pop_block`)."""
    with _lock:
        _blocks.append(allow_loopback)


def pop_block() -> None:
    """End the innermost :func:`push_block`."""
    with _lock:
        if _blocks:
            _blocks.pop()


def _blocked() -> tuple[bool, bool]:
    """(blocked, loopback allowed)."""
    with _lock:
        if _blocks:
            return True, all(_blocks)
    flag = os.environ.get("AIAPP_BLOCK_PROVIDER_CALLS", "").strip().lower()
    return flag in ("1", "true", "yes", "on"), True


def is_loopback(url: str | None) -> bool:
    """Whether a URL or bare host is this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if not url:
        return False
    for host in (url, urlsplit(url if "//" in url else f"//{url}").hostname or ""):  # bare host, then URL
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            continue
    return False


def check_provider_call(model: str, api_base: str | None) -> None:
    """Raise :class:`~aiapp.errors.ProviderCallBlockedError` if a call to ``api_base`` is blocked now."""
    blocked, loopback_ok = _blocked()
    if not blocked or (loopback_ok and is_loopback(api_base)):
        return
    where = api_base or "the provider's public API"
    raise ProviderCallBlockedError(
        f"a real call to {model} ({where}) was attempted while provider calls are blocked; "
        "use aiapp.testing.FakeModel, the StubServer or a cache recording",
        deployment=model,
        retryable=False,
    )
