"""Server settings: limits and timeouts of ``aiapp serve`` (the gateway keeps its own config)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from aiapp.errors import ConfigError


@dataclass(frozen=True)
class ServerSettings:
    """How the HTTP server treats requests.

    Attributes:
        max_body_bytes: Largest request body accepted; a larger one gets 413 (``AIAPP_SERVER_MAX_BODY_BYTES``).
        request_timeout_s: Longest a call may take, streams included, before a 504 or an error event
            ends it and the upstream call is cancelled (``AIAPP_SERVER_TIMEOUT_S``).
        max_drain_bytes: How much of an oversized body is read and discarded so the client gets its
            413 instead of a reset connection.
    """

    max_body_bytes: int = 1_000_000
    request_timeout_s: float = 600.0
    max_drain_bytes: int = 64_000_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``AIAPP_SERVER_*`` environment variables (defaults for those unset)."""
        environ = os.environ if env is None else env
        values: dict[str, float | int] = {}
        for field, var, kind in (
            ("max_body_bytes", "AIAPP_SERVER_MAX_BODY_BYTES", int),
            ("request_timeout_s", "AIAPP_SERVER_TIMEOUT_S", float),
        ):
            raw = environ.get(var)
            if raw is None or raw == "":
                continue
            try:
                value = kind(raw)
            except ValueError as exc:
                raise ConfigError(f"{var}={raw!r} is not a number", field=var) from exc
            if value <= 0:
                raise ConfigError(f"{var} must be positive, got {raw}", field=var)
            values[field] = value
        return cls(**values)  # type: ignore[arg-type]
