"""The OpenAI-compatible fast path: OpenAI, vLLM, Ollama, LM Studio — anything with an ``api_base``.

It calls the ``openai`` SDK directly with its own retries turned off (the gateway's router owns
retries and failover), so a call costs the SDK's overhead plus a few dozen microseconds of ours,
not litellm's ~3 ms. Both clients are created on first use and reused (keep-alive).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from aiapp.errors import AuthenticationError
from aiapp.gateway._errors import map_exception
from aiapp.gateway._model import Model, ModelInfo
from aiapp.gateway._pricing import PriceTable
from aiapp.gateway.providers._openai_shapes import StreamAssembler, completion_from_openai
from aiapp.types import CallOptions, Completion, Message, StreamChunk

if TYPE_CHECKING:
    import openai


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
        self._sync: openai.OpenAI | None = None
        self._async: openai.AsyncOpenAI | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    # -- clients ---------------------------------------------------------------------------------

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

    def _client(self) -> openai.OpenAI:
        if self._sync is None:
            import openai

            self._sync = openai.OpenAI(
                api_key=self._key(), base_url=self.api_base, max_retries=0, timeout=self.timeout_s
            )
        return self._sync

    def _aclient(self) -> openai.AsyncOpenAI:
        # An async client's connections belong to the event loop that opened them: reusing it
        # from a later asyncio.run() fails with "Event loop is closed". One client per loop.
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            import openai

            self._async = openai.AsyncOpenAI(
                api_key=self._key(), base_url=self.api_base, max_retries=0, timeout=self.timeout_s
            )
            self._async_loop = loop
        return self._async

    def _request(self, messages: Sequence[Message], options: CallOptions | None) -> dict[str, Any]:
        opts = self._defaults.merged(options)
        body = opts.to_openai()
        body["model"] = self.wire_model
        body["messages"] = [m.to_openai() for m in messages]
        if opts.timeout_s is not None:
            body["timeout"] = opts.timeout_s
        return body

    # -- calls -----------------------------------------------------------------------------------

    def complete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """One chat completion."""
        body = self._request(messages, options)
        start = time.perf_counter()
        try:
            response = self._client().chat.completions.create(**body)
            return completion_from_openai(response, model=self.name, prices=self._prices, started=start)
        except Exception as exc:
            raise map_exception(exc, deployment=self.name) from exc

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Async :meth:`complete`."""
        body = self._request(messages, options)
        start = time.perf_counter()
        try:
            response = await self._aclient().chat.completions.create(**body)
            return completion_from_openai(response, model=self.name, prices=self._prices, started=start)
        except Exception as exc:
            raise map_exception(exc, deployment=self.name) from exc

    def stream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> Iterator[StreamChunk]:
        """Stream a chat completion; the last chunk carries finish reason, tool calls and usage."""
        body = self._request(messages, options)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        assembler = self._assembler(body)
        try:
            for event in self._client().chat.completions.create(**body):
                chunk = assembler.feed(event)
                if chunk is not None:
                    yield chunk
        except Exception as exc:
            raise map_exception(exc, deployment=self.name) from exc
        yield assembler.final()

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Async :meth:`stream`."""
        body = self._request(messages, options)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        assembler = self._assembler(body)
        try:
            async for event in await self._aclient().chat.completions.create(**body):
                chunk = assembler.feed(event)
                if chunk is not None:
                    yield chunk
        except Exception as exc:
            raise map_exception(exc, deployment=self.name) from exc
        yield assembler.final()

    def _assembler(self, body: dict[str, Any]) -> StreamAssembler:
        return StreamAssembler(
            model=self.name, prices=self._prices, approx_prompt_chars=len(str(body["messages"]))
        )

    def close(self) -> None:
        """Close the HTTP clients."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        self._async = None
