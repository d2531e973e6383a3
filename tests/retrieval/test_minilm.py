"""With the real MiniLM: chunks fit the model's window, and the demo corpus answers the demo query."""

from __future__ import annotations

import shutil
from pathlib import Path

from _helpers import REPO, make_settings

from aiapp.config import Settings
from aiapp.gateway.embedders import Embedder
from aiapp.retrieval import Chunker, Document, Index, load_file, token_counter

OLLAMA = REPO / "corpora" / "ollama"
DEMO_DOCS = ["faq.mdx", "docker.mdx", "linux.mdx", "context-length.mdx", "quickstart.mdx", "cli.mdx"]


def test_chunks_fit_the_model_window_and_ids_are_stable(minilm: Embedder) -> None:
    doc = load_file(OLLAMA / "docs" / "faq.mdx", source="docs/faq.mdx")
    long_text = " ".join(f"Sentence number {i} talks about GPUs, ports and models." for i in range(300))
    plain = Document(source="long.txt", text=long_text, title="Long")
    counter = token_counter(minilm)
    tokenizer = minilm.tokenizer  # type: ignore[attr-defined]
    for size in (256, 128):
        chunker = Chunker(chunk_tokens=size, chunk_overlap=16, tokens=counter)
        for source_doc in (doc, plain):
            chunks = chunker.chunk(source_doc)
            assert len(chunks) > 1
            for chunk in chunks:
                assert len(tokenizer.encode(chunk.embed_text)) <= size  # with [CLS] and [SEP]
                assert chunk.embed_text.startswith(source_doc.title or "")
            again = Chunker(chunk_tokens=size, chunk_overlap=16, tokens=counter).chunk(source_doc)
            assert [c.chunk_id for c in again] == [c.chunk_id for c in chunks]
            assert len({c.chunk_id for c in chunks}) == len(chunks)
    faq = Chunker(chunk_tokens=256, chunk_overlap=16, tokens=counter).chunk(doc)
    proxy = [c for c in faq if "HTTPS_PROXY" in c.text]
    assert proxy and any("proxy" in " ".join(c.headings).lower() for c in proxy)
    pieces = Chunker(chunk_tokens=128, chunk_overlap=16, tokens=counter).chunk(plain)
    first_words = pieces[1].text.split()[:3]
    assert " ".join(first_words) in pieces[0].text  # consecutive pieces overlap


def test_demo_query_finds_the_faq(minilm: Embedder, aiapp_home: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "ollama"
    (corpus / "docs").mkdir(parents=True)
    for name in DEMO_DOCS:
        shutil.copy(OLLAMA / "docs" / name, corpus / "docs" / name)
    settings: Settings = make_settings(aiapp_home)
    with Index.open("ollama", settings, embedder=minilm) as index:
        report = index.ingest(corpus)
        assert report.added == len(DEMO_DOCS) and not report.skipped
        for mode in ("hybrid", "dense", "sparse"):
            hits = index.search("how do I change the port the server listens on", k=3, mode=mode)
            assert hits[0].source == "docs/faq.mdx", (mode, [h.source for h in hits])
        hybrid = index.search("how do I change the port the server listens on", k=5)
        assert any("OLLAMA_HOST" in h.text for h in hybrid[:3])
