"""Every provider litellm supports (Anthropic, Gemini, Bedrock, Azure, Mistral, …) behind our seam.

This is the only module that imports litellm. The import is lazy and first pins litellm to its
bundled price map (``LITELLM_LOCAL_MODEL_COST_MAP``), so importing aiapp never reaches the network,
and turns off litellm's own retries: the gateway's router owns retries and failover.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from types import ModuleType
from typing import Any

from aiapp.gateway._allow import check_provider_call
from aiapp.gateway._errors import map_exception
from aiapp.gateway._model import Model, ModelInfo
from aiapp.gateway._pricing import PriceTable
from aiapp.gateway.providers._openai_shapes import StreamAssembler, completion_from_openai
from aiapp.types import CallOptions, Completion, Message, StreamChunk

_litellm: ModuleType | None = None


def import_litellm() -> ModuleType:
    """Import litellm offline-safe and quiet (no price-map fetch, no telemetry, no retries)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        litellm.num_retries = 0
        _litellm = litellm
    return _litellm


class LiteLLMModel(Model):
    """A model reached through litellm.

    Args:
        model: litellm's model string, e.g. ``anthropic/claude-3-5-haiku-latest``.
        api_base: Optional base URL.
        api_key_env: Environment variable with the key; litellm's own defaults apply when ``None``.
        timeout_s: Per-request timeout.
        prices: Where token prices come from.
        default_options: Parameters applied to every call.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        prices: PriceTable | None = None,
        default_options: CallOptions | None = None,
    ) -> None:
        self.name = model
        self.api_base = api_base
        self.timeout_s = timeout_s
        self.info = ModelInfo()
        self._api_key_env = api_key_env
        self._prices = prices or PriceTable()
        self._defaults = default_options or CallOptions()

    def _request(self, messages: Sequence[Message], options: CallOptions | None) -> dict[str, Any]:
        opts = self._defaults.merged(options)
        body = opts.to_openai()
        body.update(
            model=self.name,
            messages=[m.to_openai() for m in messages],
            timeout=opts.timeout_s or self.timeout_s,
            num_retries=0,
        )
        if self.api_base:
            body["api_base"] = self.api_base
        if self._api_key_env:
            key = os.environ.get(self._api_key_env)
            if not key:
                from aiapp.errors import AuthenticationError

                raise AuthenticationError(
                    f"no API key: set the environment variable {self._api_key_env}", deployment=self.name
                )
            body["api_key"] = key
        check_provider_call(self.name, self.api_base)  # after the key check: a missing key says so
        return body

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """One completion through ``litellm.acompletion``."""
        body = self._request(messages, options)
        litellm = import_litellm()
        start = time.perf_counter()
        try:
            response = await litellm.acompletion(**body)
            return completion_from_openai(response, model=self.name, prices=self._prices, started=start)
        except Exception as exc:
            raise map_exception(exc, deployment=self.name) from exc

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Stream through ``litellm.acompletion``; chunks follow the OpenAI shape."""
        body = self._request(messages, options)
        body.update(stream=True, stream_options={"include_usage": True})
        litellm = import_litellm()
        assembler = StreamAssembler(
            model=self.name, prices=self._prices, approx_prompt_chars=len(str(body["messages"]))
        )
        try:
            async for event in await litellm.acompletion(**body):
                chunk = assembler.feed(event)
                if chunk is not None:
                    yield chunk
        except Exception as exc:
            raise map_exception(exc, deployment=self.name) from exc
        yield assembler.final()
