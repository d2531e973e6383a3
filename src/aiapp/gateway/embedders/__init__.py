"""Embedding models behind one :class:`Embedder` seam: the local MiniLM and OpenAI-compatible APIs.

:func:`build_embedder` turns a name into an embedder: ``local/all-MiniLM-L6-v2`` (default, offline),
``openai/text-embedding-3-small``, or ``vllm/<name>`` with an ``api_base``.

The local MiniLM runs on one of two runtimes that give the same vectors (cosine > 0.9999 per text)
under the same name, so indexes, caches and classifiers built with one work with the other:

- ``onnx`` (default): ONNX Runtime + ``tokenizers`` (:mod:`.onnx`); no torch is imported, the graph
  is built from the packaged weights on first use and cached under ``$AIAPP_HOME/models/``;
- ``torch``: sentence-transformers (:mod:`.local`); a ~10 s import, kept as an option.

On ONNX Runtime the model also runs at int8 (``precision="int8"``, named
``local/all-MiniLM-L6-v2+int8``): about twice as fast, at a mean cosine of 0.995 to the float32
vectors. Ingest uses it (:meth:`Embedder.for_ingest`), and so does the semantic cache, which
compares int8 vectors with int8 vectors only.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Literal

from aiapp.errors import ConfigError
from aiapp.gateway.embedders._base import Embedder, Precision, TextKind, Vectors, normalize

DEFAULT_EMBEDDER = "local/all-MiniLM-L6-v2"
Runtime = Literal["onnx", "torch"]
RUNTIMES: tuple[Runtime, ...] = ("onnx", "torch")

log = logging.getLogger("aiapp.embedders")


def _onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tokenizers", "onnx"))


def build_embedder(
    name: str = DEFAULT_EMBEDDER,
    *,
    api_base: str | None = None,
    api_key_env: str | None = None,
    runtime: Runtime | None = None,
    precision: Precision = "fp32",
) -> Embedder:
    """The embedder for ``name`` (see the module docstring).

    Args:
        name: ``local/all-MiniLM-L6-v2`` or an OpenAI-compatible ``openai/...`` / ``vllm/...`` model.
        api_base: Base URL of an API embedder.
        api_key_env: Environment variable with the API embedder's key.
        runtime: For the local model: ``onnx`` or ``torch``. ``None`` means ``onnx`` when
            onnxruntime is installed, else ``torch`` (the vectors are the same either way).
        precision: For the local model on ONNX Runtime: ``fp32`` or ``int8`` (its name then ends
            in ``+int8``). Other embedders have one precision and ignore it.
    """
    prefix = name.split("/", 1)[0]
    if prefix == "local":
        from aiapp.gateway.embedders.local import MODEL_NAME

        if name != MODEL_NAME:
            raise ConfigError(f"unknown local embedder {name!r} (known: {MODEL_NAME})", field="embedder")
        if runtime is not None and runtime not in RUNTIMES:
            raise ConfigError(
                f"unknown embedder runtime {runtime!r} (use {' or '.join(RUNTIMES)})",
                field="retrieval.embedder_runtime",
            )
        if runtime is None:
            runtime = "onnx" if _onnx_available() else "torch"
            if runtime == "torch":
                log.info("onnxruntime is not installed: embedding with sentence-transformers (slower start)")
        if runtime == "onnx":
            from aiapp.gateway.embedders.onnx import OnnxEmbedder

            return OnnxEmbedder(precision=precision)
        from aiapp.gateway.embedders.local import LocalEmbedder

        return LocalEmbedder()
    if prefix in ("openai", "vllm", "hosted_vllm", "openai_compatible"):
        from aiapp.gateway.embedders.openai_compat import OpenAIEmbedder

        return OpenAIEmbedder(name, api_base=api_base, api_key_env=api_key_env)
    raise ConfigError(
        f"unknown embedder {name!r}: use local/all-MiniLM-L6-v2 or an OpenAI-compatible openai/... or vllm/... model",
        field="embedder",
    )


__all__ = [
    "DEFAULT_EMBEDDER",
    "RUNTIMES",
    "Embedder",
    "Precision",
    "Runtime",
    "TextKind",
    "Vectors",
    "build_embedder",
    "normalize",
]
