"""One error tree for aiapp. Catch broadly (``AiappError``) or precisely.

::

    AiappError
    ├── UserError                    something the user can fix: config, prompt, input
    │   ├── ConfigError              names the file, line and field
    │   ├── PromptError              names the prompt file and line
    │   ├── InputError               a bad argument or input file
    │   └── ReplayMissError          cache replay mode: a request that was not recorded (route, key, preview)
    ├── BudgetExceededError          a call would exceed a budget; refused before anything is spent
    ├── OutputParseError             a model reply that is not the JSON/schema asked for (keeps ``raw``)
    ├── GuardrailError               a guard blocked an input or a reply (``guard``, ``reason``, ``stage``)
    ├── ToolError                    a tool failed; the message goes back to the model (``tool``)
    ├── AgentLimitError              an agent run stopped before its final answer (``stop_reason``, ``run``)
    └── ProviderError                a model provider failed; ``retryable``, ``status``, ``route``, ``deployment``
        ├── RateLimitError           429, with ``retry_after`` seconds when the provider said
        │   └── LimitExceededError   aiapp's own rpm/tpm limit; nothing was sent (``retry_after``)
        ├── CircuitOpenError         a deployment's circuit breaker is open; nothing was sent
        ├── ProviderTimeoutError     no reply in time
        ├── ProviderConnectionError  could not connect
        ├── ProviderServerError      5xx
        ├── MalformedResponseError   a 2xx reply we could not decode
        ├── AuthenticationError      401/403 or a missing key (fails over, opens its breaker)
        ├── BadRequestError          400/413/422: the request itself is wrong (not retryable)
        │   └── ModelNotFoundError   404: this deployment lacks the model (fails over, opens its breaker)
        ├── ProviderCallBlockedError a real provider call while tests forbid them; nothing was sent
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


class GuardrailError(AiappError):
    """A guard blocked a call's input or its reply. Nothing blocked reached the model or the caller.

    Attributes:
        guard: The guard's name (``injection``, ``pii``, ...).
        reason: Why it blocked, in words (never the offending text itself).
        stage: ``"input"`` or ``"output"``.
        route: The gateway route, when known.
        verdicts: Every verdict of the stack up to the block (:class:`aiapp.guardrails.Verdict`).
    """

    def __init__(
        self,
        *,
        guard: str,
        reason: str,
        stage: str = "input",
        route: str | None = None,
        verdicts: tuple[object, ...] = (),
    ) -> None:
        self.guard = guard
        self.reason = reason
        self.stage = stage
        self.route = route
        self.verdicts = verdicts
        where = f" on route {route!r}" if route else ""
        super().__init__(f"guard {guard!r} blocked the {stage}{where}: {reason}")


class ToolError(AiappError):
    """A tool failed. Raise it inside a tool to send ``message`` back to the model as the tool's result.

    Attributes:
        tool: The tool's name, when known.
    """

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        self.tool = tool
        super().__init__(message)


class AgentLimitError(AiappError):
    """An agent run stopped before a final answer (a limit, a refused or invalid tool call).

    Attributes:
        stop_reason: Why the run stopped (``max_steps``, ``max_tokens``, ``max_cost``, ...).
        run: The :class:`aiapp.agents.AgentRun` that stopped, when there is one.
    """

    def __init__(self, message: str, *, stop_reason: str, run: object = None) -> None:
        self.stop_reason = stop_reason
        self.run = run
        super().__init__(message)


class ProviderError(AiappError):
    """A model provider failed.

    Attributes:
        retryable: Whether trying again (here or on another deployment) may succeed.
        status: The HTTP status, when there was one.
        route: The gateway route being served, when known.
        deployment: The deployment (``provider/model``) that failed, when known.
    """

    default_retryable = True
    #: Not retryable here, but another deployment may serve the same request: the error is about
    #: this deployment (its key, its model name), not about the request.
    deployment_fault = False

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
    """Missing or rejected credentials. Not retryable: fix the key. Other deployments may still serve."""

    default_retryable = False
    deployment_fault = True


class BadRequestError(ProviderError):
    """The provider rejected the request itself (400/404/413/422). Not retryable."""

    default_retryable = False


class ModelNotFoundError(BadRequestError):
    """The deployment does not serve the model asked for (HTTP 404). Other deployments may."""

    deployment_fault = True


class ProviderCallBlockedError(ProviderError):
    """A real provider call was attempted while they are blocked (``aiapp.testing.block_provider_calls``).

    Nothing was sent. Not retryable: the test should use a fake, the stub server or a recording.
    Another deployment of the route (a loopback one) may still serve.
    """

    default_retryable = False
    deployment_fault = True


class LimitExceededError(RateLimitError):
    """An rpm/tpm limit configured in aiapp would be exceeded, so no request was sent.

    Attributes:
        limit: ``"rpm"`` or ``"tpm"``.
        retry_after: Seconds until the call would fit.
    """

    def __init__(
        self, message: str, *, limit: str, retry_after: float | None = None, **kwargs: object
    ) -> None:
        self.limit = limit
        super().__init__(message, retry_after=retry_after, **kwargs)


class CircuitOpenError(ProviderError):
    """A deployment failed repeatedly and is cooling down; no request was sent to it.

    Attributes:
        retry_after: Seconds until the breaker lets a probe request through.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class BudgetExceededError(AiappError):
    """A call would take a budget over its limit, so it was refused before anything was spent.

    Attributes:
        scope: ``"route"`` or ``"key"``.
        name: The route or key whose budget it is.
        spent_usd: Spent so far in this window.
        reserved_usd: Held by calls still in flight.
        limit_usd: The budget.
        needed_usd: The most this call could cost (its reservation).
        window: ``daily``, ``monthly`` or ``total``.
        period: The window's current period (``2026-11-05``, ``2026-11`` or ``total``).
    """

    def __init__(
        self,
        *,
        scope: str,
        name: str,
        spent_usd: float,
        reserved_usd: float,
        limit_usd: float,
        needed_usd: float,
        window: str,
        period: str,
    ) -> None:
        self.scope = scope
        self.name = name
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.limit_usd = limit_usd
        self.needed_usd = needed_usd
        self.window = window
        self.period = period
        held = f" + ${reserved_usd:.4f} reserved by calls in flight" if reserved_usd > 0 else ""
        super().__init__(
            f"{scope} {name!r} is over its {window} budget: spent ${spent_usd:.4f}{held} of ${limit_usd:.2f}"
            f" ({period}); this call could cost up to ${needed_usd:.4f}, so it was refused before sending"
        )


class ReplayMissError(UserError):
    """Cache replay mode: this request was never recorded, so there is no reply to replay.

    Attributes:
        route: The route called.
        key: A short hash of the request (its cache key).
        preview: The start of the last user message.
    """

    def __init__(self, *, route: str, key: str, preview: str) -> None:
        self.route = route
        self.key = key
        self.preview = preview
        super().__init__(
            f"replay mode: no recorded reply for route {route!r}, request {key} (last user message: "
            f"{preview!r}); record it with AIAPP_CACHE_MODE=record (or cache.mode: record), or change "
            "the request back"
        )


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
    "AgentLimitError",
    "AiappError",
    "AllDeploymentsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CircuitOpenError",
    "ConfigError",
    "Failure",
    "GuardrailError",
    "InputError",
    "LimitExceededError",
    "MalformedResponseError",
    "ModelNotFoundError",
    "OutputParseError",
    "PromptError",
    "ProviderCallBlockedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderServerError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ReplayMissError",
    "ToolError",
    "UserError",
]
