"""Retrieval: load corpora, chunk, embed, index in Qdrant, and search (dense, BM25 or hybrid).

::

    import aiapp
    index = aiapp.Index.open("ollama")            # $AIAPP_HOME/indexes/ollama/
    report = index.ingest()                       # corpora/ollama/: only changed files re-embedded
    hits = index.search("change the port", k=5)  # list[aiapp.types.Hit], hybrid by default

Map of the package:

- ``_loaders`` (+ ``_html``, ``_pdf``): corpus folders → :class:`Document` (Markdown/MDX, text, HTML, PDF);
- ``_chunking``: llama-index Markdown and sentence splitters, sized in the embedder's tokens;
- ``_embedding``: the embedding cache (SQLite, keyed by model and text hash) and batching;
- ``stores``: the store seam; ``stores.edge`` (Qdrant Edge, default) and ``stores.qdrant`` (server);
- ``_manifest``: per-version manifests and the ``CURRENT`` pointer that makes ingest atomic;
- ``_ingest``: the incremental ingest pipeline; ``_index``: :class:`Index`.
"""

from aiapp.retrieval._chunking import Chunk, Chunker, token_counter
from aiapp.retrieval._embedding import EmbeddingCache
from aiapp.retrieval._index import Index
from aiapp.retrieval._loaders import load_corpus, load_file
from aiapp.retrieval._manifest import DocEntry, Manifest
from aiapp.retrieval._types import Document, FilterSpec, IngestReport, Progress, SearchMode, SkippedFile

__all__ = [
    "Chunk",
    "Chunker",
    "DocEntry",
    "Document",
    "EmbeddingCache",
    "FilterSpec",
    "Index",
    "IngestReport",
    "Manifest",
    "Progress",
    "SearchMode",
    "SkippedFile",
    "load_corpus",
    "load_file",
    "token_counter",
]
