"""Index: incremental ingest, atomic versions, search modes, filters, rebuilds, tracing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from _helpers import HashEmbedder, make_settings

from aiapp.config import Settings
from aiapp.errors import ConfigError, InputError
from aiapp.retrieval import Document, Index
from aiapp.tracing import Tracer, TraceStore
from aiapp.types import Hit, Retriever


def point_ids(index: Index) -> set[str]:
    shard, _ = index._current_shard()
    return shard.ids()


def assert_consistent(index: Index) -> None:
    """The store holds exactly the manifest's chunks: nothing missing, nothing duplicated."""
    from aiapp.retrieval._chunking import point_id_for

    manifest = index.manifest
    assert manifest is not None
    expected = {point_id_for(c) for entry in manifest.documents.values() for c in entry.chunks}
    assert len(expected) == manifest.chunk_count
    assert point_ids(index) == expected
    assert index.count() == manifest.chunk_count


def test_first_ingest_then_search(index: Index, corpus: Path) -> None:
    report = index.ingest(corpus)
    assert (report.added, report.changed, report.removed, report.unchanged) == (4, 0, 0, 0)
    assert report.rebuilt and report.reason == "new index"
    assert report.corpus_version and report.previous_version is None
    assert report.chunks_total == report.chunks_embedded > 0
    hits = index.search("change the port the server listens on", k=3)
    assert hits and hits[0].source == "guide/port.md"
    top = hits[0]
    assert isinstance(top, Hit)
    assert top.corpus_version == report.corpus_version == index.corpus_version
    assert top.chunk_id.startswith("guide/port.md#") and top.doc_id == "guide/port.md"
    assert top.title == "Networking" and "11434" in top.text
    assert top.metadata["tags"] == ["server", "network"]
    assert "Change the port" in top.metadata["headings"]
    assert_consistent(index)


def test_index_is_a_retriever(index: Index) -> None:
    assert isinstance(index, Retriever)
    retriever: Retriever = index  # static check: mypy verifies the protocol
    assert retriever is index


def test_incremental_add_change_delete(index: Index, corpus: Path) -> None:
    first = index.ingest(corpus)
    embedder = index.embedder
    assert isinstance(embedder, HashEmbedder)

    again = index.ingest(corpus)  # nothing changed: no new version, nothing embedded
    assert (again.added, again.changed, again.removed, again.unchanged) == (0, 0, 0, 4)
    assert again.corpus_version == first.corpus_version and not again.rebuilt
    assert again.chunks_embedded == 0 and index.manifest is not None and index.manifest.generation == 1

    (corpus / "guide" / "gpu.md").write_text("# GPUs\n\nIntel Arc GPUs work through Vulkan.\n")
    (corpus / "faq.txt").unlink()
    (corpus / "guide" / "new.md").write_text("# Proxies\n\nSet HTTPS_PROXY to reach the registry.\n")
    os.utime(corpus / "guide" / "models.md")  # touched, not changed
    before = embedder.texts
    report = index.ingest(corpus)
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 2)
    assert report.chunks_embedded == embedder.texts - before == 2  # only the new and the changed doc
    assert report.corpus_version != first.corpus_version
    assert report.previous_version == first.corpus_version
    assert index.manifest is not None and index.manifest.generation == 2
    assert_consistent(index)

    sources = {h.source for h in index.search("GPUs", k=10, mode="sparse")}
    assert "guide/gpu.md" in sources and "faq.txt" not in sources
    assert index.search("Intel Arc Vulkan", k=1, mode="sparse")[0].source == "guide/gpu.md"
    assert not index.search("offline network pulled", k=10, mode="sparse") or all(
        h.source != "faq.txt" for h in index.search("offline network pulled", k=10)
    )
    assert index.search("HTTPS_PROXY registry", k=1)[0].source == "guide/new.md"


def test_documents_can_be_passed_directly(index: Index) -> None:
    docs = [Document(source="a", text="alpha beta", title="A"), Document(source="b", text="gamma delta")]
    report = index.ingest(docs)
    assert report.corpus == "<documents>" and report.added == 2
    assert index.search("gamma", k=1, mode="sparse")[0].doc_id == "b"
    assert index.ingest(docs[:1]).removed == 1
    with pytest.raises(InputError, match="same source 'a'"):
        index.ingest([docs[0], docs[0]])


def test_search_modes_and_filters(index: Index, corpus: Path) -> None:
    index.ingest(corpus)
    for mode in ("hybrid", "dense", "sparse"):
        hits = index.search("GPU compute capability", k=2, mode=mode)
        assert hits[0].source == "guide/gpu.md", mode
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    only = index.search("port", k=10, filter={"tags": "network"})
    assert {h.source for h in only} == {"guide/port.md"}
    some = index.search("models", k=10, filter={"source": ["guide/models.md", "faq.txt"]})
    assert {h.source for h in some} <= {"guide/models.md", "faq.txt"} and some
    assert index.search("models", k=10, filter={"modified": {"gt": time.time() + 3600}}) == []
    assert index.search("models", k=10, filter={"modified": {"lte": time.time() + 3600}})
    with pytest.raises(InputError, match="range bounds"):
        index.search("x", filter={"modified": {"after": 1}})
    with pytest.raises(InputError, match="unknown search mode"):
        index.search("x", mode="fuzzy")  # type: ignore[arg-type]
    assert index.search("the of and", k=3, mode="sparse") == []  # only stop words: no BM25 terms


def test_search_before_ingest_is_a_clear_error(index: Index) -> None:
    with pytest.raises(InputError, match="run `aiapp index test` first"):
        index.search("anything")


def test_missing_corpus_folder(index: Index, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="corpus folder does not exist"):
        index.ingest(tmp_path / "nope")


def test_changing_chunking_or_embedder_rebuilds_and_says_why(settings: Settings, corpus: Path) -> None:
    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        first = index.ingest(corpus)
    changed = make_settings(settings.home, chunk_tokens=48, chunk_overlap=8)
    with Index.open("test", changed, embedder=HashEmbedder()) as index:
        report = index.ingest(corpus)
        assert report.rebuilt and report.reason is not None and "chunk_tokens=64" in report.reason
        assert "chunk_tokens=48" in report.reason and report.unchanged == 4
        assert report.chunks_embedded == report.chunks_total > 0
        assert report.corpus_version != first.corpus_version
        assert_consistent(index)
    with Index.open("test", changed, embedder=HashEmbedder(name="test/other")) as index:
        report = index.ingest(corpus)
        assert report.reason == "embedding model changed from test/hash to test/other"
    with (
        Index.open("test", changed, embedder=HashEmbedder()) as index,
        pytest.raises(ConfigError, match="built with"),
    ):
        index.search("port")


def test_rebuild_uses_the_embedding_cache(index: Index, corpus: Path) -> None:
    first = index.ingest(corpus)
    embedder = index.embedder
    assert isinstance(embedder, HashEmbedder)
    before = embedder.texts
    report = index.ingest(corpus, rebuild=True)
    assert report.rebuilt and report.reason == "rebuild requested"
    assert report.embeddings_cached == report.chunks_embedded == first.chunks_total
    assert embedder.texts == before  # nothing reached the model
    assert report.corpus_version == first.corpus_version  # same content, same version


def test_old_versions_are_cleaned_up(index: Index, corpus: Path) -> None:
    for i in range(4):
        (corpus / "faq.txt").write_text(f"Revision {i} of the FAQ.\n")
        index.ingest(corpus)
    manifest = index.manifest
    assert manifest is not None and manifest.generation == 4
    assert index.store.versions() == [manifest.parent, manifest.store_version]
    assert index.directory.manifest_versions() == [manifest.parent, manifest.store_version]


def test_search_records_a_retrieval_span(settings: Settings, corpus: Path) -> None:
    store = TraceStore(":memory:")
    with Index.open("test", settings, embedder=HashEmbedder(), tracer=Tracer(store)) as index:
        index.ingest(corpus)
        hits = index.search("port", k=2)
    [span] = store.recent(5, kind="retrieval")
    assert span.name == "search test" and span.input == "port"
    assert span.attributes["corpus_version"] == hits[0].corpus_version
    assert span.attributes["mode"] == "hybrid" and span.attributes["hits"] == len(hits)
    assert span.attributes["results"][0]["chunk_id"] == hits[0].chunk_id
    assert hits[0].chunk_id in span.output


def test_a_second_index_object_sees_new_versions(settings: Settings, corpus: Path) -> None:
    reader = Index.open("test", settings, embedder=HashEmbedder())
    writer = Index.open("test", settings, embedder=HashEmbedder())
    writer.ingest(corpus)
    assert reader.search("GPUs", k=1)[0].source == "guide/gpu.md"
    (corpus / "guide" / "gpu.md").unlink()
    report = writer.ingest(corpus)
    hits = reader.search("GPUs", k=5)
    assert all(h.source != "guide/gpu.md" for h in hits)
    assert hits[0].corpus_version == report.corpus_version
    reader.close()
    writer.close()


def test_bad_index_name(settings: Settings) -> None:
    with pytest.raises(InputError, match="invalid index name"):
        Index.open("../escape", settings)


def test_two_processes_can_search_one_index(index: Index, corpus: Path) -> None:
    import subprocess
    import sys

    index.ingest(corpus)
    assert index.search("GPUs", k=1)[0].source == "guide/gpu.md"  # this process holds the version open
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from pathlib import Path; from _helpers import HashEmbedder, make_settings;"
        "from aiapp.retrieval import Index;"
        "s = make_settings(Path(sys.argv[1]), chunk_tokens=64, chunk_overlap=8);"
        "print(Index.open('test', s, embedder=HashEmbedder()).search('GPUs', k=1)[0].source)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(index.settings.home), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "guide/gpu.md"
