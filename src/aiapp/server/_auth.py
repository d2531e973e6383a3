"""The seam to virtual keys (:mod:`aiapp.server._keys`): what the app needs from a key store.

The app codes against :class:`KeyStoreLike`; the key store raises ``AuthFailure`` (``status``,
``message``, ``code``, ``retry_after``), which becomes an OpenAI-shaped 401/402/403/429. A server
created with ``keys=None`` runs open: every request is served as the anonymous key, for local use.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from aiapp.server._wire import WireError


class KeyStoreLike(Protocol):
    """What :func:`aiapp.server.create_app` calls on a key store (see :mod:`aiapp.server._keys`)."""

    async def authenticate(self, authorization_header: str | None) -> Any:
        """The key record for an ``Authorization`` header; raises ``AuthFailure``."""
        ...

    def allowed_routes(self, record: Any, all_routes: list[str]) -> list[str]:
        """The routes this key may call."""
        ...

    async def admit(self, record: Any, route: str, estimated_tokens: int) -> Any:
        """Admit one call (route allowed, rpm/tpm); raises ``AuthFailure``."""
        ...

    async def settle(self, admission: Any, used_tokens: int | None) -> None:
        """Settle an admitted call with the tokens it used."""
        ...


def _auth_failures() -> tuple[type[BaseException], ...]:
    try:
        module = importlib.import_module("aiapp.server._keys")
    except ImportError:
        return ()
    failure = getattr(module, "AuthFailure", None)
    return (failure,) if isinstance(failure, type) and issubclass(failure, BaseException) else ()


#: The key store's failure type(s); empty (catches nothing) until :mod:`aiapp.server._keys` exists.
AUTH_FAILURES: tuple[type[BaseException], ...] = _auth_failures()


def auth_error(exc: BaseException) -> WireError:
    """An ``AuthFailure`` as an OpenAI-shaped error."""
    status = int(getattr(exc, "status", 401))
    kind = {
        401: "authentication_error",
        402: "insufficient_quota",
        403: "permission_error",
        429: "rate_limit_error",
    }
    return WireError(
        status,
        str(getattr(exc, "message", None) or exc),
        type=kind.get(status, "invalid_request_error"),
        code=getattr(exc, "code", None),
        retry_after=getattr(exc, "retry_after", None),
    )


def key_metadata(record: Any) -> dict[str, Any]:
    """What the gateway's budget layer reads for a key: ``budget_key``, ``budget_usd``, ``key_id``."""
    if record is None:
        return {}
    given = getattr(record, "budget_metadata", None)
    if isinstance(given, dict):
        meta = dict(given)
    else:
        meta = {"budget_key": getattr(record, "name", None)}
        if getattr(record, "budget_usd", None) is not None:
            meta["budget_usd"] = record.budget_usd
    meta.setdefault("key_id", getattr(record, "id", None) or getattr(record, "name", None))
    meta.setdefault("key_name", getattr(record, "name", None))
    return meta


def load_key_store(settings: Any) -> KeyStoreLike | None:
    """The configured key store, via ``aiapp.server._keys.from_settings(settings)``; ``None`` if absent."""
    try:
        module = importlib.import_module("aiapp.server._keys")
    except ImportError:
        return None
    factory = getattr(module, "from_settings", None) or getattr(
        getattr(module, "KeyStore", None), "from_settings", None
    )
    if factory is None:
        return None
    store: KeyStoreLike = factory(settings)
    return store
