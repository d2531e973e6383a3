"""Map provider exceptions onto aiapp's error tree — once, from status codes and exception types.

The fast path raises aiohttp transport errors (its HTTP statuses are mapped where they are read,
with :func:`error_for_status`); litellm raises the ``openai`` SDK's exception classes or ``httpx``
transport errors. One mapping serves all of them. Message text is never matched.
"""

from __future__ import annotations

import email.utils
import json
import sys
import time
from typing import Any

from aiapp.errors import (
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
)

# Statuses that a later attempt can fix even though they are 4xx.
_RETRYABLE_4XX = {408, 409, 425}
_BAD_REQUEST = {400, 405, 413, 415, 422}


def error_for_status(
    status: int,
    detail: str,
    *,
    retry_after: float | None = None,
    route: str | None = None,
    deployment: str | None = None,
) -> ProviderError:
    """The aiapp error for an HTTP status from a provider."""
    where: dict[str, Any] = {"status": status, "route": route, "deployment": deployment}
    if status == 429:
        return RateLimitError(detail, retry_after=retry_after, **where)
    if status in (401, 403):
        return AuthenticationError(detail, **where)
    if status == 404:
        return ModelNotFoundError(detail, **where)
    if status in _BAD_REQUEST:
        return BadRequestError(detail, **where)
    if status >= 500:
        return ProviderServerError(detail, **where)
    return ProviderError(detail, retryable=status in _RETRYABLE_4XX, **where)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` headers."""
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000.0)
        value = headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


def map_exception(
    exc: BaseException, *, route: str | None = None, deployment: str | None = None
) -> ProviderError:
    """Translate any exception raised while calling a provider into a :class:`ProviderError`."""
    if isinstance(exc, ProviderError):
        return exc.at(route=route, deployment=deployment)
    where: dict[str, Any] = {"route": route, "deployment": deployment}
    name = type(exc).__name__
    openai = sys.modules.get("openai")
    httpx = sys.modules.get("httpx")
    if openai is not None:
        # Order matters: APITimeoutError subclasses APIConnectionError.
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeoutError(f"timed out ({name})", **where)
        if isinstance(exc, openai.APIResponseValidationError):
            return MalformedResponseError(f"reply did not match the API schema ({name})", **where)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            if httpx is not None and isinstance(cause, httpx.TimeoutException):
                return ProviderTimeoutError(f"timed out ({type(cause).__name__})", **where)
            if httpx is not None and isinstance(cause, httpx.RemoteProtocolError):
                return MalformedResponseError(
                    f"connection closed mid-reply ({type(cause).__name__})", **where
                )
            return ProviderConnectionError(f"could not connect ({name}: {cause or exc})", **where)
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(
                exc.status_code, _status_detail(exc), retry_after=_retry_after(exc), **where
            )
    if httpx is not None:
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeoutError(f"timed out ({name})", **where)
        if isinstance(exc, httpx.RemoteProtocolError):
            return MalformedResponseError(f"connection closed mid-reply ({name})", **where)
        if isinstance(exc, httpx.TransportError):
            return ProviderConnectionError(f"could not connect ({name}: {exc})", **where)
    if isinstance(exc, TimeoutError):  # also aiohttp's ServerTimeoutError, before its connection errors
        return ProviderTimeoutError(f"timed out ({name})", **where)
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None:
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return MalformedResponseError(f"connection closed mid-reply ({name})", **where)
        if isinstance(exc, aiohttp.ClientConnectionError):
            return ProviderConnectionError(f"could not connect ({name}: {exc})", **where)
        if isinstance(exc, aiohttp.ClientError):
            return ProviderConnectionError(f"HTTP client error ({name}: {exc})", **where)
    if isinstance(exc, ConnectionError):
        return ProviderConnectionError(f"could not connect ({name}: {exc})", **where)
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return MalformedResponseError(f"reply is not valid JSON ({name}: {exc})", **where)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return error_for_status(status, f"{name}: {exc}", retry_after=_retry_after(exc), **where)
    return ProviderError(f"unexpected {name}: {exc}", retryable=False, **where)


def _retry_after(exc: Any) -> float | None:
    # litellm re-raises openai's classes but keeps the provider's headers on its own attribute.
    response = getattr(exc, "response", None)
    for headers in (getattr(response, "headers", None), getattr(exc, "litellm_response_headers", None)):
        value = parse_retry_after(headers)
        if value is not None:
            return value
    return None


def _status_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return str(message)[:500]
    text = str(getattr(exc, "message", "") or exc)
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__
