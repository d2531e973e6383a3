"""The Qdrant server code path (qdrant-client), run against qdrant-client's local mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import HashEmbedder, make_settings
from test_crash import kill_mid_ingest

from aiapp.errors import ConfigError
from aiapp.retrieval import Index
from aiapp.retrieval._chunking import point_id_for


def ids_match_manifest(index: Index) -> None:
    manifest = index.manifest
    assert manifest is not None
    shard, _ = index._current_shard()
    expected = {point_id_for(c) for entry in manifest.documents.values() for c in entry.chunks}
    assert shard.ids() == expected and shard.count() == manifest.chunk_count


@pytest.mark.parametrize("url", [":memory:", "local"])
def test_ingest_search_and_incremental_update(aiapp_home: Path, corpus: Path, url: str) -> None:
    settings = make_settings(aiapp_home, chunk_tokens=64, chunk_overlap=8, url=url, fusion="rrf")
    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        assert index.store.kind == "qdrant"
        first = index.ingest(corpus)
        assert first.added == 4
        for mode in ("hybrid", "dense", "sparse"):
            hits = index.search("GPUs compute capability", k=2, mode=mode)
            assert hits[0].source == "guide/gpu.md" and hits[0].corpus_version == first.corpus_version
        assert {h.source for h in index.search("port", k=10, filter={"tags": ["network"]})} == {
            "guide/port.md"
        }
        assert index.search("port", k=10, filter={"modified": {"lt": 0}}) == []

        (corpus / "faq.txt").unlink()
        (corpus / "guide" / "gpu.md").write_text("# GPUs\n\nIntel Arc GPUs work through Vulkan.\n")
        report = index.ingest(corpus)
        assert (report.added, report.changed, report.removed, report.unchanged) == (0, 1, 1, 2)
        ids_match_manifest(index)
        assert index.search("Intel Arc Vulkan", k=1)[0].source == "guide/gpu.md"
        manifest = index.manifest
        assert manifest is not None and manifest.store == "qdrant"
        assert index.store.versions() == [manifest.parent, manifest.store_version]


def test_killed_ingest_with_the_client_store(aiapp_home: Path, corpus: Path, tmp_path: Path) -> None:
    settings = make_settings(aiapp_home, chunk_tokens=64, chunk_overlap=8, url="local")
    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        first = index.ingest(corpus)
    (corpus / "guide" / "gpu.md").write_text("# GPUs\n\nOnly Intel Arc cards now.\n")
    kill_mid_ingest(aiapp_home, corpus, tmp_path, "write", "local")
    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        assert index.corpus_version == first.corpus_version
        assert index.search("GPUs compute capability", k=1)[0].source == "guide/gpu.md"
        report = index.ingest(corpus)
        assert report.changed == 1 and report.previous_version == first.corpus_version
        ids_match_manifest(index)


def test_an_in_memory_store_that_lost_its_data_is_rebuilt(aiapp_home: Path, corpus: Path) -> None:
    settings = make_settings(aiapp_home, chunk_tokens=64, chunk_overlap=8, url=":memory:")
    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        index.ingest(corpus)
    with Index.open("test", settings, embedder=HashEmbedder()) as index:
        with pytest.raises(ConfigError, match="re-run `aiapp index`"):
            index.search("port")
        report = index.ingest(corpus)
        assert report.rebuilt and report.reason is not None and "no longer holds" in report.reason
        assert index.search("port", k=1)


def test_bad_url_is_a_config_error(aiapp_home: Path) -> None:
    settings = make_settings(aiapp_home, url="ftp://nowhere")
    with pytest.raises(ConfigError, match="unsupported Qdrant url"):
        _ = Index.open("test", settings, embedder=HashEmbedder()).store
