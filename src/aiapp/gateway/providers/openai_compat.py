"""The OpenAI-compatible fast path: OpenAI, vLLM, Ollama, LM Studio — anything with an ``api_base``.

It speaks the chat-completions wire itself over aiohttp (:mod:`aiapp.gateway.providers._http`
says why), with no retries of its own (the gateway's router owns retries and failover), so a
call costs a few dozen microseconds of ours, not litellm's ~3 ms. Connection pools are kept per
event loop and reused (keep-alive).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiapp.errors import AuthenticationError
from aiapp.gateway._allow import check_provider_call
from aiapp.gateway._model import Model, ModelInfo
from aiapp.gateway._pricing import PriceTable
from aiapp.gateway.providers._http import HttpClient
from aiapp.gateway.providers._openai_shapes import StreamAssembler, completion_from_openai
from aiapp.types import CallOptions, Completion, Message, StreamChunk


class OpenAICompatibleModel(Model):
    """A model served over the OpenAI chat-completions API.

    Args:
        model: ``provider/name`` as configured (``openai/gpt-4o-mini``, ``vllm/meta-llama/...``);
            the part after the first ``/`` is sent as the model name.
        api_base: Base URL (``http://host:8000/v1``); ``None`` means api.openai.com.
        api_key: The key; when ``None`` it is read from ``api_key_env``.
        api_key_env: Environment variable holding the key (default ``OPENAI_API_KEY`` for OpenAI).
        timeout_s: Per-request timeout.
        prices: Where token prices come from.
        default_options: Parameters applied to every call (configured ``params``).
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        prices: PriceTable | None = None,
        default_options: CallOptions | None = None,
    ) -> None:
        self.name = model
        self.wire_model = model.split("/", 1)[1] if "/" in model else model
        self.api_base = api_base
        self.timeout_s = timeout_s
        self.info = ModelInfo()
        self._api_key = api_key
        self._api_key_env = api_key_env or ("OPENAI_API_KEY" if api_base is None else None)
        self._prices = prices or PriceTable()
        self._defaults = default_options or CallOptions()
        self._url = (api_base or "https://api.openai.com/v1").rstrip("/") + "/chat/completions"
        self._client: HttpClient | None = None

    # -- the wire --------------------------------------------------------------------------------

    def _key(self) -> str:
        if self._api_key:
            return self._api_key
        if self._api_key_env:
            value = os.environ.get(self._api_key_env)
            if value:
                return value
            if self.api_base is None:
                raise AuthenticationError(
                    f"no API key: set the environment variable {self._api_key_env}", deployment=self.name
                )
        # Self-hosted servers (vLLM, Ollama) usually accept any key.
        return "EMPTY"

    def _http(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient({"Authorization": f"Bearer {self._key()}"}, deployment=self.name)
        check_provider_call(self.name, self.api_base)  # after the key check: a missing key says so
        return self._client

    def _request(
        self, messages: Sequence[Message], options: CallOptions | None
    ) -> tuple[dict[str, Any], float]:
        opts = self._defaults.merged(options)
        body = opts.to_openai()
        body["model"] = self.wire_model
        body["messages"] = [m.to_openai() for m in messages]
        return body, opts.timeout_s if opts.timeout_s is not None else self.timeout_s

    # -- calls -----------------------------------------------------------------------------------

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """One chat completion."""
        body, timeout_s = self._request(messages, options)
        start = time.perf_counter()
        reply = await self._http().post_json(self._url, body, timeout_s=timeout_s)
        return completion_from_openai(reply, model=self.name, prices=self._prices, started=start)

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream a chat completion; the last chunk carries finish reason, tool calls and usage."""
        body, timeout_s = self._request(messages, options)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        assembler = StreamAssembler(
            model=self.name, prices=self._prices, approx_prompt_chars=len(str(body["messages"]))
        )
        async for event in self._http().post_events(self._url, body, timeout_s=timeout_s):
            chunk = assembler.feed(event)
            if chunk is not None:
                yield chunk
        yield assembler.final()

    async def aclose(self) -> None:
        """Close this loop's connection pool."""
        if self._client is not None:
            await self._client.aclose()

    def close(self) -> None:
        """Close the connection pools (each on its own loop)."""
        if self._client is not None:
            self._client.close_all()
