"""Embedding models behind one :class:`Embedder` seam: the local MiniLM and OpenAI-compatible APIs.

:func:`build_embedder` turns a name into an embedder: ``local/all-MiniLM-L6-v2`` (default, offline),
``openai/text-embedding-3-small``, or ``vllm/<name>`` with an ``api_base``.
"""

from __future__ import annotations

from aiapp.errors import ConfigError
from aiapp.gateway.embedders._base import Embedder, TextKind, Vectors, normalize

DEFAULT_EMBEDDER = "local/all-MiniLM-L6-v2"


def build_embedder(
    name: str = DEFAULT_EMBEDDER, *, api_base: str | None = None, api_key_env: str | None = None
) -> Embedder:
    """The embedder for ``name`` (see the module docstring)."""
    prefix = name.split("/", 1)[0]
    if prefix == "local":
        from aiapp.gateway.embedders.local import MODEL_NAME, LocalEmbedder

        if name != MODEL_NAME:
            raise ConfigError(f"unknown local embedder {name!r} (known: {MODEL_NAME})", field="embedder")
        return LocalEmbedder()
    if prefix in ("openai", "vllm", "hosted_vllm", "openai_compatible"):
        from aiapp.gateway.embedders.openai_compat import OpenAIEmbedder

        return OpenAIEmbedder(name, api_base=api_base, api_key_env=api_key_env)
    raise ConfigError(
        f"unknown embedder {name!r}: use local/all-MiniLM-L6-v2 or an OpenAI-compatible openai/... or vllm/... model",
        field="embedder",
    )


__all__ = ["DEFAULT_EMBEDDER", "Embedder", "TextKind", "Vectors", "build_embedder", "normalize"]
