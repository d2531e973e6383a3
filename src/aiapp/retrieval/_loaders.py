"""Load a corpus folder into :class:`Document` values: Markdown/MDX, text, HTML and PDF.

Files are chosen by include/exclude globs relative to the corpus root (``**`` spans folders).
Binary or undecodable files are skipped with a reason naming the file, never silently. Markdown
front matter (``---`` YAML) supplies ``title``, ``tags`` and other metadata; the title falls back to
the first ``#`` heading, then the file name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiapp.errors import InputError
from aiapp.retrieval._html import html_to_markdown
from aiapp.retrieval._types import Document, SkippedFile

log = logging.getLogger("aiapp.retrieval")

MARKDOWN_SUFFIXES = {".md", ".mdx", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
TEXT_SUFFIXES = {".txt", ".text", ".rst"}
MAX_HEADINGS = 32

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_MDX_IMPORT = re.compile(r"^\s*(import|export)\s.*$", re.MULTILINE)
_JSX_LINE = re.compile(r"^\s*</?[A-Z][\w.]*(\s[^<>]*)?/?>\s*$", re.MULTILINE)
_JSX_TAG = re.compile(r"</?[A-Z][\w.]*(\s[^<>]*)?/?>")


@dataclass
class LoadResult:
    """Documents loaded from a corpus folder, and the files left out."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob: ``*`` and ``?`` stay within a folder, ``**/`` spans any number of folders."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def iter_corpus_files(
    root: Path, include: Sequence[str], exclude: Sequence[str]
) -> Iterator[tuple[Path, str]]:
    """Files under ``root`` matching ``include`` and not ``exclude``, as (path, posix path relative to root)."""
    includes = [glob_to_regex(p) for p in include]
    excludes = [glob_to_regex(p) for p in exclude]
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if any(rx.match(rel) for rx in includes) and not any(rx.match(rel) for rx in excludes):
            yield path, rel


def load_corpus(root: Path, *, include: Sequence[str], exclude: Sequence[str]) -> LoadResult:
    """Load every matching file under ``root``; problems become ``skipped``/``warnings`` entries.

    Raises:
        InputError: ``root`` is not a folder.
    """
    if not root.is_dir():
        raise InputError(f"{root}: corpus folder does not exist")
    result = LoadResult()
    for path, rel in iter_corpus_files(root, include, exclude):
        try:
            doc = load_file(path, source=rel, warnings=result.warnings)
        except InputError as exc:
            result.skipped.append(SkippedFile(path=rel, reason=str(exc).removeprefix(f"{path}: ")))
            log.warning("skipped %s", exc)
            continue
        if not doc.text.strip():
            result.skipped.append(SkippedFile(path=rel, reason="no text"))
            log.warning("skipped %s: no text", path)
            continue
        result.documents.append(doc)
    return result


def load_file(path: Path, *, source: str | None = None, warnings: list[str] | None = None) -> Document:
    """Load one file by its suffix (unknown suffixes are read as text).

    Raises:
        InputError: naming the file, when it is unreadable, binary or not UTF-8.
    """
    source = source or path.name
    suffix = path.suffix.lower()
    try:
        modified = path.stat().st_mtime
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {exc.strerror}") from exc
    if suffix == ".pdf":
        from aiapp.retrieval._pdf import read_pdf

        text, title = read_pdf(path)
        return Document(source=source, text=text, title=title or path.stem, kind="text", modified=modified)
    raw = _read_text(path)
    if suffix in HTML_SUFFIXES:
        text, title, headings = html_to_markdown(raw)
        meta: dict[str, Any] = {"headings": headings[:MAX_HEADINGS]} if headings else {}
        return Document(
            source=source,
            text=text,
            title=title or path.stem,
            kind="markdown",
            modified=modified,
            metadata=meta,
        )
    if suffix in MARKDOWN_SUFFIXES:
        return _markdown_document(raw, path, source, modified, mdx=suffix == ".mdx", warnings=warnings)
    return Document(source=source, text=raw, title=path.stem, kind="text", modified=modified)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {exc.strerror}") from exc
    if b"\x00" in data[:8192]:
        raise InputError(f"{path}: binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def _markdown_document(
    raw: str, path: Path, source: str, modified: float, *, mdx: bool, warnings: list[str] | None
) -> Document:
    meta: dict[str, Any] = {}
    body = raw
    match = _FRONT_MATTER.match(raw)
    if match:
        body = raw[match.end() :]
        try:
            front = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 2}" if mark is not None else ""
            message = f"{path}{line}: invalid front matter ignored ({getattr(exc, 'problem', None) or exc})"
            log.warning("%s", message)
            if warnings is not None:
                warnings.append(message)
            front = None
        if isinstance(front, dict):
            meta = {str(k): _jsonable(v) for k, v in front.items()}
    if mdx:
        body = _strip_mdx(body)
    headings = markdown_headings(body)
    if headings:
        meta["headings"] = headings[:MAX_HEADINGS]
    title = meta.pop("title", None)
    if not isinstance(title, str) or not title.strip():
        title = headings[0] if headings else path.stem
    return Document(source=source, text=body, title=title, kind="markdown", modified=modified, metadata=meta)


def markdown_headings(text: str) -> list[str]:
    """The ``#`` headings of a Markdown text, in order, ignoring fenced code."""
    out: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            match = _HEADING.match(line)
            if match:
                out.append(match.group(2).strip())
    return out


def _strip_mdx(text: str) -> str:
    """Drop MDX ``import``/``export`` lines and JSX component tags, keeping their text content."""
    lines: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            lines.append(line)
            continue
        if in_fence:
            lines.append(line)
            continue
        if _MDX_IMPORT.fullmatch(line) or _JSX_LINE.fullmatch(line):
            continue
        lines.append(_JSX_TAG.sub("", line))
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
