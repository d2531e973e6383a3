"""Hostile corpora (issue 13): corrupt and deeply nested PDFs, oversized files, links out and loops.

Every file is untrusted input: one that cannot be read, parsed or chunked is skipped with a
reason in the ingest report, and the rest of the corpus is indexed as usual.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import pytest
from _helpers import HashEmbedder, make_settings, write_corpus
from typer.testing import CliRunner

from aiapp.cli import app
from aiapp.errors import InputError
from aiapp.retrieval import Index, load_corpus, load_file
from aiapp.retrieval._chunking import Chunker
from aiapp.testing import StubServer

INCLUDE = ["**/*.md", "**/*.txt", "**/*.pdf"]


def simple_pdf(text: str, *, content: bytes | None = None) -> bytes:
    """A one-page PDF showing ``text`` (or running the raw ``content`` stream)."""
    stream = content if content is not None else f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def writer_pdf(text: str) -> bytes:
    """A valid PDF written by pypdf's writer, with a Flate-compressed content stream."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(simple_pdf(text))))
    for page in writer.pages:
        page.compress_content_streams()
    writer.add_metadata({"/Title": "Fuzzed"})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def flip_bytes(data: bytes, seed: int, *, max_flips: int = 20) -> bytes:
    """``data`` with 1..max_flips random bits flipped (seeded: the same seed, the same file)."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.randint(1, max_flips)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def nested_pdf(depth: int = 5000) -> bytes:
    """A PDF whose content stream holds an array nested ``depth`` deep (pypdf: RecursionError)."""
    return simple_pdf("", content=b"BT /F1 12 Tf " + b"[" * depth + b"]" * depth + b" TJ ET")


def skipped_of(report_or_result: object) -> dict[str, str]:
    return {s.path: s.reason for s in report_or_result.skipped}  # type: ignore[attr-defined]


# -- defect 2: a corrupt PDF ends the whole ingest ---------------------------------------------


def test_byte_flipped_pdfs_are_skipped_with_reasons_and_the_rest_is_indexed(
    tmp_path: Path, aiapp_home: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    base = writer_pdf("Quarterly figures for the fuzzing department " * 10)
    (corpus / "good.pdf").write_bytes(base)
    fuzzed = [f"fuzz/{seed:03d}.pdf" for seed in range(80)]  # seeds 58, 67 broke the old loader
    for seed, rel in enumerate(fuzzed):
        path = corpus / rel
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(flip_bytes(base, seed))
    settings = make_settings(aiapp_home, chunk_tokens=64, chunk_overlap=8)
    with Index.open("fuzz", settings, embedder=HashEmbedder()) as index:
        report = index.ingest(corpus)
        skipped = skipped_of(report)
        assert report.added + len(skipped) == 4 + 1 + len(fuzzed)
        assert skipped, "some byte-flipped PDFs must be unreadable"
        for rel, reason in skipped.items():
            assert rel in fuzzed and (reason.startswith("not a readable PDF (") or reason == "no text")
        indexed = {s for s in index.manifest.documents}  # type: ignore[union-attr]
        assert {"good.pdf", "guide/port.md", "faq.txt"} <= indexed
        assert indexed.isdisjoint(skipped)
        assert index.search("fuzzing department quarterly figures", k=1)[0].source.endswith(".pdf")


def test_deeply_nested_pdf_recursion_error_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "deep.pdf").write_bytes(nested_pdf())
    (root / "ok.md").write_text("# Fine\n\nA normal page.\n")
    with pytest.raises(InputError, match=r"deep\.pdf: not a readable PDF \(RecursionError: "):
        load_file(root / "deep.pdf")
    result = load_corpus(root, include=INCLUDE, exclude=[])
    assert [d.source for d in result.documents] == ["ok.md"]
    assert skipped_of(result)["deep.pdf"].startswith("not a readable PDF (RecursionError: maximum recursion")


def test_a_document_that_cannot_be_chunked_is_skipped(
    index: Index, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk = Chunker.chunk

    def flaky(self: Chunker, doc: object) -> object:
        if doc.source == "guide/gpu.md":  # type: ignore[attr-defined]
            raise RecursionError("maximum recursion depth exceeded")
        return chunk(self, doc)  # type: ignore[arg-type]

    monkeypatch.setattr(Chunker, "chunk", flaky)
    report = index.ingest(corpus)
    assert (report.added, report.removed) == (3, 0)
    assert skipped_of(report) == {
        "guide/gpu.md": "could not be chunked (RecursionError: maximum recursion depth exceeded)"
    }
    assert "guide/gpu.md" not in index.manifest.documents  # type: ignore[union-attr]
    assert index.search("change the port", k=1)[0].source == "guide/port.md"


# -- defect 3: no size guard --------------------------------------------------------------------


def test_file_over_the_size_limit_is_skipped_unread(
    tmp_path: Path, aiapp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    big = corpus / "big.txt"
    with big.open("w") as handle:  # 90 kB of sentences against a 0.05 MB (50 kB) limit
        for i in range(2000):
            handle.write(f"Sentence number {i} of a very large file. ")
    size = big.stat().st_size
    opened: list[str] = []
    real_open = Path.open

    def spy(self: Path, *args: object, **kwargs: object) -> object:
        opened.append(self.name)
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", spy)
    settings = make_settings(aiapp_home, chunk_tokens=64, chunk_overlap=8, max_file_mb=0.05)
    with Index.open("big", settings, embedder=HashEmbedder()) as index:
        report = index.ingest(corpus)
    assert report.added == 4
    assert skipped_of(report) == {
        "big.txt": f"file is {size / 1e6:.1f} MB, over the 0.05 MB limit (retrieval.max_file_mb); not read"
    }
    assert "big.txt" not in opened and "faq.txt" in opened


def test_pdf_size_and_extracted_text_limits(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "long.pdf").write_bytes(simple_pdf("x" * 2000))
    result = load_corpus(root, include=INCLUDE, exclude=[], max_file_mb=0.001)  # 1000 characters of text
    assert skipped_of(result) == {"long.pdf": "PDF text exceeds the limit of 1,000 characters"}
    result = load_corpus(root, include=INCLUDE, exclude=[], max_pdf_mb=0.001)
    assert "over the 0.001 MB limit (retrieval.max_pdf_mb)" in skipped_of(result)["long.pdf"]
    assert load_corpus(root, include=INCLUDE, exclude=[]).documents[0].text == "x" * 2000


def test_front_matter_alias_bomb_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (root / "bomb.md").write_text("---\n" + "\n".join(lines) + "\n---\n# Bomb\n\ntext\n")
    (root / "ok.md").write_text("# Fine\n\ntext\n")
    result = load_corpus(root, include=INCLUDE, exclude=[])
    assert [d.source for d in result.documents] == ["ok.md"]
    assert skipped_of(result) == {"bomb.md": "front matter expands to over 10,000 values"}


# -- defect 6: links followed out of the corpus, loops skipped silently -------------------------


def link_corpus(tmp_path: Path) -> Path:
    corpus = write_corpus(tmp_path / "corpus")
    secrets = tmp_path / "elsewhere"
    secrets.mkdir()
    (secrets / "secret.md").write_text("# Secret\n\nThe vault combination is zebra-kumquat-4471.\n")
    (corpus / "leak.md").symlink_to(secrets / "secret.md")
    (corpus / "leakdir").symlink_to(secrets, target_is_directory=True)
    (corpus / "alias.md").symlink_to(corpus / "faq.txt")  # a link inside the corpus: indexed as before
    (corpus / "loop_a.md").symlink_to(corpus / "loop_b.md")
    (corpus / "loop_b.md").symlink_to(corpus / "loop_a.md")
    (corpus / "self.md").symlink_to("self.md")
    (corpus / "guide" / "up").symlink_to("..", target_is_directory=True)
    (corpus / "dangling.md").symlink_to(tmp_path / "missing.md")
    return corpus


def test_links_out_of_the_corpus_and_loops_are_skipped_and_listed(tmp_path: Path, aiapp_home: Path) -> None:
    corpus = link_corpus(tmp_path)
    outside = (tmp_path / "elsewhere").resolve()
    settings = make_settings(aiapp_home, chunk_tokens=64, chunk_overlap=8)
    with Index.open("links", settings, embedder=HashEmbedder()) as index:
        report = index.ingest(corpus)
        hits = index.search("vault combination zebra kumquat", k=10)
        assert "alias.md" in index.manifest.documents  # type: ignore[union-attr]
    skipped = skipped_of(report)
    hint = "outside the corpus folder (set retrieval.follow_links_outside to index it)"
    assert skipped == {
        "dangling.md": f"broken symbolic link (to {tmp_path / 'missing.md'})",
        "guide/up": "symbolic link loop (to " + str(corpus.resolve()) + ", a folder above it)",
        "leak.md": f"symbolic link to {outside / 'secret.md'}, {hint}",
        "leakdir": f"symbolic link to {outside}, {hint}",
        "loop_a.md": "symbolic link loop",
        "loop_b.md": "symbolic link loop",
        "self.md": "symbolic link loop",
    }
    assert report.added == 5
    assert all("zebra" not in h.text for h in hits)


def test_follow_links_outside_indexes_them_and_still_stops_loops(tmp_path: Path) -> None:
    corpus = link_corpus(tmp_path)
    (tmp_path / "elsewhere" / "back").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    result = load_corpus(corpus, include=INCLUDE, exclude=[], follow_links_outside=True)
    sources = {d.source for d in result.documents}
    assert {"leak.md", "leakdir/secret.md"} <= sources
    skipped = skipped_of(result)
    assert skipped["leakdir/back"].startswith("symbolic link loop")
    assert {"self.md", "loop_a.md", "loop_b.md", "dangling.md", "guide/up"} <= set(skipped)


def test_special_files_and_excluded_links_are_handled(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "ok.md").write_text("# Fine\n\ntext\n")
    os.mkfifo(root / "pipe.md")  # reading it would block forever
    (root / ".hidden.md").symlink_to(".hidden.md")  # excluded: not reported
    result = load_corpus(root, include=INCLUDE, exclude=["**/.*"])
    assert [d.source for d in result.documents] == ["ok.md"]
    assert skipped_of(result) == {"pipe.md": "not a regular file (FIFO, socket or device)"}


# -- the CLI lists every skipped file -----------------------------------------------------------


def test_index_cli_lists_hostile_files(tmp_path: Path, stub: StubServer) -> None:
    corpus = link_corpus(tmp_path / "x")
    (corpus / "deep.pdf").write_bytes(nested_pdf())
    (corpus / "big.txt").write_text("word " * 20_000)
    config = tmp_path / "aiapp.yaml"
    config.write_text(
        "retrieval:\n"
        "  embedder: vllm/stub-embed\n"
        f"  embedder_api_base: {stub.base_url}\n"
        "  chunk_tokens: 64\n"
        "  chunk_overlap: 8\n"
        "  max_file_mb: 0.05\n"
    )
    runner = CliRunner()
    args = ["index", "demo", "--path", str(corpus), "--config", str(config)]
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    skipped = {s["path"]: s["reason"] for s in json.loads(result.output)["skipped"]}
    assert {"deep.pdf", "big.txt", "leak.md", "leakdir", "self.md", "guide/up", "dangling.md"} <= set(skipped)
    assert skipped["deep.pdf"].startswith("not a readable PDF (RecursionError")
    result = runner.invoke(app, [*args, "--rebuild"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "skipped deep.pdf: not a readable PDF (RecursionError" in result.output
    assert "skipped big.txt: file is 0.1 MB, over the 0.05 MB limit" in result.output
