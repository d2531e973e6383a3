"""Loaders: Markdown/MDX with front matter, text, HTML, PDF; globs; bad files skipped, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiapp.errors import InputError
from aiapp.retrieval import load_corpus, load_file
from aiapp.retrieval._loaders import glob_to_regex

INCLUDE = ["**/*.md", "**/*.mdx", "**/*.txt", "**/*.htm*", "**/*.pdf"]
EXCLUDE = ["**/.*", "**/.*/**", "**/LICENSE*", "drafts/**"]


def make_pdf(text: str, title: str | None = None) -> bytes:
    """A minimal one-page PDF with ``text`` in Helvetica."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title:
        objects.append(f"<< /Title ({title}) >>".encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    info = b" /Info %d 0 R" % len(objects) if title else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


def test_markdown_front_matter_title_tags_headings(tmp_path: Path) -> None:
    path = tmp_path / "port.md"
    path.write_text(
        "---\ntitle: Networking\ntags: [server, network]\nowner: docs-team\n---\n"
        "# Ports\n\n```sh\n# not a heading\n```\n\n## Change the port\n\nSet OLLAMA_HOST.\n"
    )
    doc = load_file(path, source="port.md")
    assert doc.title == "Networking" and doc.kind == "markdown"
    assert doc.tags == ["server", "network"]
    assert doc.metadata["owner"] == "docs-team"
    assert doc.metadata["headings"] == ["Ports", "Change the port"]
    assert not doc.text.startswith("---") and doc.modified is not None


def test_title_falls_back_to_heading_then_file_name(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Intro line.\n\n# The Heading\n\ntext\n")
    (tmp_path / "b.md").write_text("no headings at all\n")
    assert load_file(tmp_path / "a.md").title == "The Heading"
    assert load_file(tmp_path / "b.md").title == "b"


def test_mdx_components_and_imports_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "page.mdx"
    path.write_text(
        'import { Tabs } from "x"\n\n# Page\n\n<Note>\nKeep this sentence.\n</Note>\n\n'
        '<Card title="y">inline</Card> text\n\n```jsx\n<Note>code stays</Note>\n```\n'
    )
    doc = load_file(path)
    assert "import" not in doc.text and "<Note>" not in doc.text.split("```")[0]
    assert "Keep this sentence." in doc.text and "inline text" in doc.text
    assert "<Note>code stays</Note>" in doc.text


def test_html_becomes_markdown(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Install guide</title><style>p{}</style></head><body>"
        "<h1>Install</h1><p>Run the <b>installer</b>.</p><script>alert(1)</script>"
        "<h2>Linux</h2><ul><li>curl it</li></ul></body></html>"
    )
    doc = load_file(path)
    assert doc.title == "Install guide" and doc.kind == "markdown"
    assert "# Install" in doc.text and "## Linux" in doc.text and "Run the installer." in doc.text
    assert "alert" not in doc.text and "p{}" not in doc.text
    assert doc.metadata["headings"] == ["Install", "Linux"]


def test_pdf_text_and_title(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf("The server listens on port 11434.", title="Server manual"))
    doc = load_file(path)
    assert "port 11434" in doc.text and doc.title == "Server manual"
    (tmp_path / "untitled.pdf").write_bytes(make_pdf("Hello PDF"))
    assert load_file(tmp_path / "untitled.pdf").title == "untitled"


def test_bad_files_are_skipped_with_a_reason_naming_them(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "good.md").write_text("# Good\n\nfine\n")
    (root / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (root / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (root / "sub" / "empty.txt").write_text("   \n")
    (root / "front.md").write_text("---\ntitle: [unclosed\n---\n# Body\n\nstill indexed\n")
    result = load_corpus(root, include=INCLUDE, exclude=EXCLUDE)
    assert sorted(d.source for d in result.documents) == ["front.md", "good.md"]
    reasons = {s.path: s.reason for s in result.skipped}
    assert set(reasons) == {"binary.txt", "latin1.md", "broken.pdf", "sub/empty.txt"}
    assert "binary" in reasons["binary.txt"]
    assert "not UTF-8" in reasons["latin1.md"]
    assert "not a readable PDF" in reasons["broken.pdf"]
    assert reasons["sub/empty.txt"] == "no text"
    [warning] = result.warnings
    assert "front.md:2" in warning and "front matter" in warning


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    root = tmp_path / "c"
    for rel in ("a.md", "deep/er/b.md", "drafts/c.md", ".hidden/d.md", "LICENSE.txt", "e.py", "f.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n\ncontent\n")
    result = load_corpus(root, include=INCLUDE, exclude=EXCLUDE)
    assert sorted(d.source for d in result.documents) == ["a.md", "deep/er/b.md", "f.txt"]
    only_md = load_corpus(root, include=["*.md"], exclude=[])
    assert [d.source for d in only_md.documents] == ["a.md"]


def test_glob_semantics() -> None:
    assert glob_to_regex("**/*.md").match("a.md") and glob_to_regex("**/*.md").match("x/y/a.md")
    assert not glob_to_regex("*.md").match("x/a.md")
    assert glob_to_regex("docs/**").match("docs/a/b.txt")
    assert glob_to_regex("file[0-9].txt").match("file3.txt") and not glob_to_regex("file[!0-9].txt").match(
        "file3.txt"
    )


def test_missing_folder_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_corpus(tmp_path / "missing", include=INCLUDE, exclude=[])
    with pytest.raises(InputError, match=r"missing\.md"):
        load_file(tmp_path / "missing.md")
