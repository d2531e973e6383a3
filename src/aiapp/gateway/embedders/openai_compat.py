"""Embeddings over the OpenAI ``/v1/embeddings`` API (OpenAI, vLLM, Ollama, the stub server)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from aiapp.errors import AuthenticationError
from aiapp.gateway._allow import check_provider_call
from aiapp.gateway._errors import map_exception
from aiapp.gateway.embedders._base import Embedder, TextKind, Vectors, normalize


class OpenAIEmbedder(Embedder):
    """An API embedding model.

    Args:
        model: ``provider/name`` (``openai/text-embedding-3-small``); the part after ``/`` goes on the wire.
        api_base: Base URL; ``None`` means api.openai.com.
        api_key_env: Environment variable with the key (default ``OPENAI_API_KEY`` without ``api_base``).
        dim: Vector size when known in advance (learned from the first reply otherwise).
        batch_size: Texts per request.
        timeout_s: Per-request timeout.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        dim: int = 0,
        batch_size: int = 128,
        timeout_s: float = 60.0,
        max_tokens: int = 8191,
    ) -> None:
        self.name = model
        self.wire_model = model.split("/", 1)[1] if "/" in model else model
        self.api_base = api_base
        self.dim = dim
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self._api_key_env = api_key_env or ("OPENAI_API_KEY" if api_base is None else None)
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            key = os.environ.get(self._api_key_env, "") if self._api_key_env else ""
            if not key and self.api_base is None:
                raise AuthenticationError(
                    f"no API key: set the environment variable {self._api_key_env}", deployment=self.name
                )
            self._client = openai.OpenAI(
                api_key=key or "EMPTY", base_url=self.api_base, max_retries=0, timeout=self.timeout_s
            )
        return self._client

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        """Embed texts in batches of ``batch_size``."""
        check_provider_call(self.name, self.api_base)
        rows: list[list[float]] = []
        client = self._get_client()
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            try:
                response = client.embeddings.create(model=self.wire_model, input=batch)
            except Exception as exc:
                raise map_exception(exc, deployment=self.name) from exc
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = normalize(np.asarray(rows, dtype=np.float32))
        self.dim = vectors.shape[1]
        return vectors
