"""Cache keys: a hash of everything that decides a reply.

The exact key covers the route and its deployments (model, endpoint, fixed params), every message,
every generation parameter (temperature, max_tokens, tools, response format, provider extras —
not the timeout) and the prompt name@version and content hash when the call came from a prompt.
Changing any of them is a different request.

The semantic *scope* is the same minus the last user message, plus the numbers in it: only requests
that agree on all of that may share a reply by meaning (see :mod:`aiapp.gateway.cache._semantic`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from aiapp.config import Route
from aiapp.gateway._context import CallContext
from aiapp.types import CallOptions, Message

KEY_VERSION = 1
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"\w+")


def route_identity(route: str, config: Route | None, model_name: str) -> str:
    """What stands behind a route, for keys: its name and deployments (or the injected model's name)."""
    if config is None:
        return json.dumps(["route", route, model_name])
    deployments = [[d.model, d.api_base, d.params] for d in config.deployments]
    return json.dumps(["route", route, deployments], sort_keys=True, default=str)


def options_payload(options: CallOptions | None) -> dict[str, Any]:
    """The generation parameters that change a reply (everything but ``timeout_s``), defaults dropped."""
    if options is None:
        return {}
    return options.model_dump(mode="json", exclude={"timeout_s"}, exclude_defaults=True)


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def request_key(
    identity: str, messages: Sequence[Message], options: CallOptions | None, context: CallContext | None
) -> str:
    """The exact cache key of a request (64 hex digits)."""
    prompt = [context.prompt_ref, context.prompt_hash] if context is not None else [None, None]
    return _digest(
        [KEY_VERSION, identity, [m.to_openai() for m in messages], options_payload(options), prompt]
    )


def last_user_text(messages: Sequence[Message]) -> str | None:
    """The last message's text when it is a user message (what the semantic cache compares)."""
    if messages and messages[-1].role == "user" and messages[-1].content.strip():
        return messages[-1].content
    return None


def numbers_in(text: str) -> list[str]:
    """The numbers in ``text``, normalised (``1,729`` → ``1729``) and sorted."""
    return sorted({match.replace(",", "") for match in _NUMBER.findall(text)})


def word_count(text: str) -> int:
    """Words in ``text`` (runs of letters and digits)."""
    return len(_WORD.findall(text))


def semantic_scope(
    identity: str, messages: Sequence[Message], options: CallOptions | None, context: CallContext | None
) -> str | None:
    """The semantic scope of a request, or ``None`` when its last message is not a user message."""
    text = last_user_text(messages)
    if text is None:
        return None
    prompt = [context.prompt_ref, context.prompt_hash] if context is not None else [None, None]
    earlier = [m.to_openai() for m in messages[:-1]]
    return _digest(
        ["semantic", KEY_VERSION, identity, earlier, options_payload(options), prompt, numbers_in(text)]
    )


def preview(text: str | None, limit: int = 80) -> str:
    """The start of ``text`` on one line, for error messages."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
