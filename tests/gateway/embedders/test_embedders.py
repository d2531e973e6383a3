"""Embedders: the bundled MiniLM offline, and the OpenAI-compatible API against the stub."""

from __future__ import annotations

import numpy as np
import pytest

from aiapp.errors import ConfigError, ProviderServerError
from aiapp.gateway.embedders import build_embedder
from aiapp.testing import StubServer


def test_local_minilm_embeds_offline() -> None:
    embedder = build_embedder()
    vectors = embedder.embed(["How do I change the port?", "Set OLLAMA_HOST to change the port.", "Bananas."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors[0]
    assert sims[1] > sims[2]  # the related sentence is closer than the unrelated one
    assert embedder.count_tokens("hello world") == 2
    assert embedder.max_tokens == 256


def test_api_embedder_against_the_stub(stub: StubServer) -> None:
    embedder = build_embedder("vllm/stub-embed", api_base=stub.base_url)
    vectors = embedder.embed(["a", "b c", "a"])
    assert vectors.shape[0] == 3 and embedder.dim == vectors.shape[1]
    assert np.allclose(vectors[0], vectors[2])
    stub.inject("500", endpoint="embeddings")
    with pytest.raises(ProviderServerError):
        embedder.embed(["x"])


def test_unknown_embedder() -> None:
    with pytest.raises(ConfigError, match="unknown embedder"):
        build_embedder("cohere/embed-v3")
