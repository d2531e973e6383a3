"""Index manifests and the on-disk layout that makes ingest atomic.

::

    $AIAPP_HOME/indexes/<name>/
        CURRENT                 the published version's name (replaced atomically)
        manifests/<version>.json
        store/<version>/        Qdrant Edge shard (or a collection on a Qdrant server)
        .lock                   held by the process that is ingesting

A version is published by writing its manifest, then replacing ``CURRENT`` with an atomic rename
(both fsynced). Until that rename, readers see the previous version, whatever happens to the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiapp._files import atomic_write
from aiapp.errors import ConfigError, InputError

FORMAT = 1


class DocEntry(BaseModel):
    """One document in a manifest: its content hash and the ids of its chunks."""

    model_config = ConfigDict(extra="forbid")

    hash: str
    chunks: list[str] = Field(default_factory=list)
    title: str | None = None
    modified: float | None = None


class Manifest(BaseModel):
    """What one published index version holds, and how it was built.

    Attributes:
        index: The index name.
        corpus: The corpus root it was built from.
        version: The corpus version: a hash of the build config and every document's hash.
        generation: 1 for the first version, +1 for each published ingest.
        store: The backend (``edge`` or ``qdrant``).
        store_version: The store's name for this version (shard folder or collection suffix).
        parent: The version this one was built from (kept on disk for readers still using it).
        embedder: The embedder that embedded the documents (its ``name``, e.g.
            ``local/all-MiniLM-L6-v2+int8`` for the ONNX runtime's int8 ingest) and ``dim`` its
            vector size. A search refuses an index whose embedder its own does not declare it can
            search (``Embedder.searches``); an ingest with another embedder re-embeds everything.
        embedder_runtime: What ran the local model (``onnx`` or ``torch``): for the record only,
            since float32 vectors are the same from both (a search may use the other one).
        chunking: Chunk size, overlap (model tokens) and chunker version.
        sparse: The BM25 model and its parameters.
        documents: Per document (by source path): content hash and chunk ids.
        chunk_count: Chunks in this version.
    """

    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    index: str
    corpus: str
    version: str
    generation: int
    store: str
    store_version: str
    parent: str | None = None
    created_at: float = Field(default_factory=time.time)
    embedder: str
    embedder_runtime: str | None = None
    dim: int
    chunking: dict[str, Any]
    sparse: dict[str, Any]
    documents: dict[str, DocEntry] = Field(default_factory=dict)
    chunk_count: int = 0

    def build_config(self) -> dict[str, Any]:
        """What forces a rebuild when it changes (the measured BM25 ``avg_len`` is kept, not compared)."""
        return build_config(self.embedder, self.chunking, self.sparse, self.store)


def build_config(
    embedder: str, chunking: dict[str, Any], sparse: dict[str, Any], store: str
) -> dict[str, Any]:
    """The part of an index's configuration that its vectors depend on."""
    return {
        "embedder": embedder,
        "chunking": chunking,
        "sparse": {k: v for k, v in sparse.items() if k != "avg_len"},
        "store": store,
    }


def corpus_version(config: dict[str, Any], documents: dict[str, DocEntry], extra: dict[str, Any]) -> str:
    """A short hash of the build config and every document's content hash."""
    payload = json.dumps(
        [config, extra, sorted((source, entry.hash) for source, entry in documents.items())], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


class IndexDir:
    """The folder of one index: the published pointer, manifests and the ingest lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / "manifests"

    @property
    def pointer(self) -> Path:
        """The ``CURRENT`` file."""
        return self.root / "CURRENT"

    def current_version(self) -> str | None:
        """The published version's name, if any."""
        try:
            name = self.pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def current(self) -> Manifest | None:
        """The published manifest, if any.

        Raises:
            ConfigError: naming the manifest file when it is unreadable.
        """
        name = self.current_version()
        return None if name is None else self.read(name)

    def read(self, version: str) -> Manifest:
        """The manifest of ``version``."""
        path = self.manifests / f"{version}.json"
        try:
            return Manifest.model_validate_json(path.read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(
                "the published index manifest is missing (re-run `aiapp index`)", path=str(path)
            ) from exc
        except ValidationError as exc:
            raise ConfigError(f"unreadable index manifest: {exc.errors()[0]['msg']}", path=str(path)) from exc

    def publish(self, manifest: Manifest) -> None:
        """Write ``manifest`` and point ``CURRENT`` at it: the commit point of an ingest."""
        self.manifests.mkdir(parents=True, exist_ok=True)
        atomic_write(self.manifests / f"{manifest.store_version}.json", manifest.model_dump_json().encode())
        atomic_write(self.pointer, (manifest.store_version + "\n").encode())

    def manifest_versions(self) -> list[str]:
        """Versions with a manifest on disk."""
        if not self.manifests.is_dir():
            return []
        return sorted(p.stem for p in self.manifests.glob("*.json"))

    def drop_manifest(self, version: str) -> None:
        """Delete a version's manifest."""
        with contextlib.suppress(FileNotFoundError):
            (self.manifests / f"{version}.json").unlink()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the ingest lock (released by the OS if the process dies).

        Raises:
            InputError: another process is ingesting into this index.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
            yield
            return
        with open(self.root / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise InputError(f"{self.root}: another process is ingesting into this index") from exc
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
