"""Self-hosted vLLM: the OpenAI-compatible fast path plus what a vLLM server adds.

A deployment takes this path with ``provider: vllm`` or ``model: vllm/auto``::

    routes:
      qwen:
        deployments:
          - model: vllm/auto              # or vllm/Qwen/Qwen2.5-0.5B-Instruct with provider: vllm
            api_base: http://127.0.0.1:8001/v1
            api_key_env: VLLM_API_KEY

What it adds over :class:`~aiapp.gateway.providers.openai_compat.OpenAICompatibleModel`:

* **Discovery**: before the first call it reads ``GET {api_base}/models`` (and ``GET /version``)
  once per process. ``vllm/auto`` sends the first served model; a named model that the server does
  not serve, or a server that serves none, is a :class:`~aiapp.errors.ConfigError` naming the
  ``model`` field and what the server does serve.
* **Health**: :meth:`VLLMModel.ahealth` reads ``GET /health`` (and the model list) without
  spending a token; ``aiapp models --check`` uses it.
* **Structured outputs**: vLLM's options are passed through from ``CallOptions.extra`` (or the
  deployment's ``params``), spelled either way: the old ``guided_json``/``guided_regex``/
  ``guided_choice``/``guided_grammar`` fields (removed in vLLM 0.12) or the new
  ``structured_outputs: {json|regex|choice|grammar: ...}``. When ``/version`` says which the
  server speaks they are translated to it; otherwise they are sent as written. ``response_format``
  with a JSON schema works on every vLLM since 0.6 and is passed as is.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiapp.errors import ConfigError, InputError, MalformedResponseError
from aiapp.gateway.providers.openai_compat import OpenAICompatibleModel
from aiapp.types import CallOptions, Completion, Message, StreamChunk

#: The old top-level request fields and their names inside ``structured_outputs``.
GUIDED_FIELDS = {
    "guided_json": "json",
    "guided_regex": "regex",
    "guided_choice": "choice",
    "guided_grammar": "grammar",
    "guided_whitespace_pattern": "whitespace_pattern",
}
_CONSTRAINTS = ("json", "regex", "choice", "grammar")
_NEW_API = (0, 10, 2)  # the first vLLM that reads ``structured_outputs``
_DISCOVERY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ServerInfo:
    """What a vLLM server said about itself.

    Attributes:
        models: The served model ids, in the server's order.
        version: ``GET /version``'s version as a tuple, or ``None`` when it did not say.
    """

    models: tuple[str, ...]
    version: tuple[int, ...] | None

    @property
    def structured_outputs(self) -> bool | None:
        """Whether the server reads ``structured_outputs`` (``None``: unknown, send as written)."""
        return None if self.version is None else self.version >= _NEW_API


_SERVERS: dict[str, ServerInfo] = {}  # per process, keyed by api_base: discovery runs once


def clear_discovery_cache() -> None:
    """Forget what servers said (a server restarted with another model; tests)."""
    _SERVERS.clear()


def _version(raw: bytes) -> tuple[int, ...] | None:
    try:
        text = str(json.loads(raw).get("version", ""))
    except (ValueError, AttributeError):
        return None
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


def vllm_options(params: dict[str, Any]) -> tuple[CallOptions, dict[str, Any]]:
    """Split a deployment's ``params`` into :class:`CallOptions` and vLLM's own fields (``extra``).

    vLLM reads many sampling fields OpenAI lacks (``top_k``, ``min_p``, ``repetition_penalty``,
    the structured-output fields); any key that is not a ``CallOptions`` field goes to ``extra``.
    """
    known = set(CallOptions.model_fields)
    extra = {k: v for k, v in params.items() if k not in known}
    typed = {k: v for k, v in params.items() if k in known}
    if extra:
        typed["extra"] = {**extra, **(typed.get("extra") or {})}
    try:
        return CallOptions.model_validate(typed), extra
    except ValueError as exc:
        raise ConfigError(f"bad params for a vllm deployment: {exc}", field="params") from exc


def translate_structured(body: dict[str, Any], *, new_api: bool | None) -> dict[str, Any]:
    """Spell ``body``'s structured-output fields the way the server reads them.

    Args:
        body: A chat-completions request body (changed in place and returned).
        new_api: ``True``: ``structured_outputs: {...}``; ``False``: ``guided_*``; ``None``: as written.

    Raises:
        InputError: more than one constraint (json, regex, choice, grammar) was asked for; vLLM
            rejects that, so it is refused before the call.
    """
    nested = body.get("structured_outputs")
    if nested is not None and not isinstance(nested, dict):
        raise InputError("structured_outputs must be a mapping such as {'json': {...schema...}}")
    merged: dict[str, Any] = dict(nested or {})
    for old, new in GUIDED_FIELDS.items():
        if old in body:
            merged[new] = body[old]
    asked = [c for c in _CONSTRAINTS if merged.get(c) is not None]
    if len(asked) > 1:
        raise InputError(f"vLLM takes one structured-output constraint per request, got {', '.join(asked)}")
    if not merged or new_api is None:
        return body
    for old in GUIDED_FIELDS:
        body.pop(old, None)
    body.pop("structured_outputs", None)
    if new_api:
        body["structured_outputs"] = merged
    else:
        reverse = {new: old for old, new in GUIDED_FIELDS.items()}
        for key, value in merged.items():
            body[reverse.get(key, key)] = value
    return body


class VLLMModel(OpenAICompatibleModel):
    """A model served by a vLLM server (``vllm serve MODEL``): discovery, health, structured outputs.

    Args:
        model: ``vllm/auto`` (send whatever the server serves first) or ``vllm/<served name>``.
        api_base: The server's base URL, ``http://host:port/v1`` (required).
        **kwargs: As for :class:`OpenAICompatibleModel`.
    """

    def __init__(self, model: str, *, api_base: str | None, **kwargs: Any) -> None:
        if not api_base:
            raise ConfigError(
                f"{model} needs api_base (the vLLM server, http://host:port/v1)", field="api_base"
            )
        super().__init__(model, api_base=api_base, **kwargs)
        self.configured = self.wire_model
        self._base = api_base.rstrip("/")
        self._server: ServerInfo | None = None

    @property
    def root(self) -> str:
        """The server's root URL (``/health`` and ``/version`` live outside ``/v1``)."""
        return self._base.removesuffix("/v1")

    async def discover(self) -> ServerInfo:
        """Read the served models (cached per process) and choose the model name to send.

        Raises:
            ConfigError: the server serves no model, or not the configured one.
            ProviderError: the server could not be reached.
        """
        info = self._server or _SERVERS.get(self._base)
        if info is None:
            http = self._http()
            raw = await http.get(self._base + "/models", timeout_s=min(self.timeout_s, _DISCOVERY_TIMEOUT_S))
            try:
                data = json.loads(raw).get("data") or []
                models = tuple(str(m["id"]) for m in data)
            except (ValueError, AttributeError, TypeError, KeyError) as exc:
                raise MalformedResponseError(
                    f"GET {self._base}/models did not return a model list", deployment=self.name
                ) from exc
            try:
                version = _version(await http.get(self.root + "/version", timeout_s=_DISCOVERY_TIMEOUT_S))
            except Exception:  # not every server has /version; translation then sends fields as written
                version = None
            info = _SERVERS[self._base] = ServerInfo(models, version)
        if not info.models:
            raise ConfigError(
                f"the vLLM server at {self._base} serves no model (GET /models is empty); "
                "start it with `vllm serve MODEL`",
                field="model",
            )
        if self.configured == "auto":
            self.wire_model = info.models[0]
        elif self.configured not in info.models:
            raise ConfigError(
                f"{self.name}: the vLLM server at {self._base} does not serve {self.configured!r}; "
                f"it serves {', '.join(repr(m) for m in info.models)} (or use model: vllm/auto)",
                field="model",
            )
        self._server = info
        return info

    async def ahealth(self) -> str:
        """Check ``GET /health`` and that the configured model is served, spending no tokens.

        Returns:
            A one-line description (``"ok: serves Qwen/..."``).

        Raises:
            ProviderError: the server is down or unhealthy.
            ConfigError: it serves no model, or not the configured one.
        """
        await self._http().get(self.root + "/health", timeout_s=min(self.timeout_s, _DISCOVERY_TIMEOUT_S))
        self._server = None
        _SERVERS.pop(self._base, None)  # a health check always asks afresh
        await self.discover()
        return f"ok: serves {self.wire_model}"

    def _request(
        self, messages: Sequence[Message], options: CallOptions | None
    ) -> tuple[dict[str, Any], float]:
        body, timeout_s = super()._request(messages, options)
        new_api = self._server.structured_outputs if self._server is not None else None
        return translate_structured(body, new_api=new_api), timeout_s

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """One chat completion (discovering the served model first, once)."""
        if self._server is None:
            await self.discover()
        return await super().acomplete(messages, options)

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream a chat completion (discovering the served model first, once)."""
        if self._server is None:
            await self.discover()
        async for chunk in super().astream(messages, options):
            yield chunk
