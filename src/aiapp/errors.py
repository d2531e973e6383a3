"""One error tree for aiapp. Catch broadly (``AiappError``) or precisely.

::

    AiappError
    ├── UserError                    something the user can fix: config, prompt, input
    │   ├── ConfigError              names the file, line and field
    │   ├── PromptError              names the prompt file and line
    │   └── InputError               a bad argument or input file
    ├── OutputParseError             a model reply that is not the JSON/schema asked for (keeps ``raw``)
    └── ProviderError                a model provider failed; ``retryable``, ``status``, ``route``, ``deployment``
        ├── RateLimitError           429, with ``retry_after`` seconds when the provider said
        ├── ProviderTimeoutError     no reply in time
        ├── ProviderConnectionError  could not connect
        ├── ProviderServerError      5xx
        ├── MalformedResponseError   a 2xx reply we could not decode
        ├── AuthenticationError      401/403 or a missing key (not retryable)
        ├── BadRequestError          400/404/413/422 (not retryable)
        └── AllDeploymentsFailedError every deployment of a route failed; ``failures`` lists each

Provider failures are mapped once, in :mod:`aiapp.gateway._errors`, from status codes and exception
types — never by matching message text.
"""

from __future__ import annotations

from dataclasses import dataclass


class AiappError(Exception):
    """Base of every error aiapp raises on purpose."""


class UserError(AiappError):
    """Input the user can fix. The message says where and what."""


class ConfigError(UserError):
    """A configuration file or value is wrong.

    Args:
        message: What is wrong and how to fix it.
        path: The file, when there is one.
        line: 1-based line in that file, when known.
        field: Dotted path of the offending field, when known.
    """

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = path
        self.line = line
        self.field = field
        where = _where(path, line, field)
        super().__init__(f"{where}: {message}" if where else message)


class PromptError(UserError):
    """A prompt file is invalid or cannot be rendered."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = _where(path, line, None)
        super().__init__(f"{where}: {message}" if where else message)


class InputError(UserError):
    """A bad argument or input file."""


class OutputParseError(AiappError):
    """A model reply could not be parsed as asked. ``raw`` keeps the reply so nothing is lost."""

    def __init__(self, message: str, *, raw: str) -> None:
        self.raw = raw
        preview = raw if len(raw) <= 300 else raw[:300] + "…"
        super().__init__(f"{message}\nraw reply: {preview!r}")


class ProviderError(AiappError):
    """A model provider failed.

    Attributes:
        retryable: Whether trying again (here or on another deployment) may succeed.
        status: The HTTP status, when there was one.
        route: The gateway route being served, when known.
        deployment: The deployment (``provider/model``) that failed, when known.
    """

    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        route: str | None = None,
        deployment: str | None = None,
    ) -> None:
        self.detail = message
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.route = route
        self.deployment = deployment
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.route:
            parts.append(f"route {self.route!r}")
        if self.deployment:
            parts.append(f"deployment {self.deployment!r}")
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        prefix = ", ".join(parts)
        return f"{prefix}: {self.detail}" if prefix else self.detail

    def at(self, *, route: str | None = None, deployment: str | None = None) -> ProviderError:
        """Record where the error happened (kept if already set) and refresh the message."""
        self.route = self.route or route
        self.deployment = self.deployment or deployment
        self.args = (self._render(),)
        return self


class RateLimitError(ProviderError):
    """HTTP 429. ``retry_after`` is the wait in seconds the provider asked for, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ProviderTimeoutError(ProviderError):
    """The provider did not answer in time."""


class ProviderConnectionError(ProviderError):
    """The provider could not be reached."""


class ProviderServerError(ProviderError):
    """The provider answered with a 5xx status."""


class MalformedResponseError(ProviderError):
    """The provider answered 2xx with a body we could not decode (garbage JSON, a cut stream)."""


class AuthenticationError(ProviderError):
    """Missing or rejected credentials. Not retryable: fix the key."""

    default_retryable = False


class BadRequestError(ProviderError):
    """The provider rejected the request itself (400/404/413/422). Not retryable."""

    default_retryable = False


@dataclass(frozen=True)
class Failure:
    """One failed attempt: which deployment, and the error it raised."""

    deployment: str
    error: ProviderError


class AllDeploymentsFailedError(ProviderError):
    """Every deployment of a route failed. ``failures`` lists them in the order tried."""

    def __init__(self, route: str, failures: list[Failure]) -> None:
        self.failures = failures
        summary = "; ".join(f"{f.deployment}: {type(f.error).__name__}: {f.error.detail}" for f in failures)
        last = failures[-1].error if failures else None
        super().__init__(
            f"all {len(failures)} attempt(s) failed — {summary}",
            status=last.status if last else None,
            retryable=any(f.error.retryable for f in failures),
            route=route,
        )


def _where(path: str | None, line: int | None, field: str | None) -> str:
    out = path or ""
    if line is not None:
        out = f"{out}:{line}" if out else f"line {line}"
    if field:
        out = f"{out} ({field})" if out else field
    return out


__all__ = [
    "AiappError",
    "AllDeploymentsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "Failure",
    "InputError",
    "MalformedResponseError",
    "OutputParseError",
    "PromptError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderServerError",
    "ProviderTimeoutError",
    "RateLimitError",
    "UserError",
]
