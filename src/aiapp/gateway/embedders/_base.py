"""The embedding seam: anything that turns texts into vectors.

Embedding models are models, so they sit in the gateway layer: the semantic cache (gateway) and
the retrieval layer both take an :class:`Embedder`, and API embedders reach their providers the
same way chat models do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
TextKind = Literal["document", "query"]
#: Numeric precision of a local model: ``fp32`` or ``int8`` (dynamically quantized weights).
Precision = Literal["fp32", "int8"]


class Embedder:
    """Base class for embedding models.

    Attributes:
        name: ``provider/model``, recorded in index manifests and cache keys.
        dim: Vector size.
        max_tokens: The model's input window in its own tokens (longer inputs are truncated).
    """

    name: str = "embedder"
    dim: int = 0
    max_tokens: int = 512

    def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        """Embed texts into an ``(n, dim)`` float32 array of L2-normalized rows."""
        raise NotImplementedError

    async def aembed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        """Async :meth:`embed` (runs the sync version in a worker thread by default)."""
        return await asyncio.to_thread(self.embed, texts, kind=kind)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's own tokenizer (approximate by default)."""
        return max(1, len(text) // 4)

    def for_ingest(self) -> Embedder:
        """The embedder that embeds documents at ingest (default: this one).

        An index records the returned embedder's :attr:`name`; a faster variant (the local MiniLM
        at int8) has a name of its own, so its vectors never mix with another's in a cache.
        """
        return self

    def searches(self, documents: str) -> bool:
        """Whether this embedder's query vectors can search documents embedded by the embedder
        named ``documents`` (as an index manifest records it). Default: only its own."""
        return documents == self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dim}>"


def normalize(vectors: npt.ArrayLike) -> Vectors:
    """L2-normalize rows (zero rows stay zero) as float32."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = array / norms
    return out
