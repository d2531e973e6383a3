"""Load a corpus folder into :class:`Document` values: Markdown/MDX, text, HTML and PDF.

Files are chosen by include/exclude globs relative to the corpus root (``**`` spans folders).
Every file is untrusted input: one that is binary, undecodable, too large, a symbolic link leading
out of the corpus folder or in a loop, or that fails to parse in any way is skipped with a reason
naming it (the exception's type and message when parsing failed), never silently and never ending
the load. Files over the size limit are never read. Markdown front matter (``---`` YAML) supplies ``title``, ``tags`` and other metadata; the title falls back to
the first ``#`` heading, then the file name.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiapp.errors import ConfigError, InputError
from aiapp.retrieval._html import html_to_markdown
from aiapp.retrieval._types import Document, SkippedFile

log = logging.getLogger("aiapp.retrieval")

MARKDOWN_SUFFIXES = {".md", ".mdx", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
TEXT_SUFFIXES = {".txt", ".text", ".rst"}
MAX_HEADINGS = 32
MB = 1_000_000
#: Defaults of ``retrieval.max_file_mb`` and ``retrieval.max_pdf_mb``.
MAX_FILE_MB = 10.0
MAX_PDF_MB = 50.0
#: Front-matter values larger than this (YAML aliases can expand exponentially) make the file skipped.
MAX_FRONT_MATTER_NODES = 10_000

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
    root: Path,
    include: Sequence[str],
    exclude: Sequence[str],
    *,
    follow_links_outside: bool = False,
    skipped: list[SkippedFile] | None = None,
) -> Iterator[tuple[Path, str]]:
    """Files under ``root`` matching ``include`` and not ``exclude``, as (path, posix path relative to root).

    Symbolic links are resolved: a link whose target lies outside ``root`` is left out unless
    ``follow_links_outside``; links in a loop, broken links, links to folders inside ``root`` (whose
    files are found under their own paths) and special files (FIFOs, devices) are left out too.
    Each of those is appended to ``skipped`` with its reason. Excluded folders are not entered.
    """
    includes = [glob_to_regex(p) for p in include]
    excludes = [glob_to_regex(p) for p in exclude]
    out = skipped if skipped is not None else []

    def wanted(rel: str) -> bool:
        return any(rx.match(rel) for rx in includes) and not any(rx.match(rel) for rx in excludes)

    def excluded(rel: str) -> bool:
        return any(rx.match(rel) for rx in excludes)

    def pruned(rel: str) -> bool:  # a folder every one of whose files an exclude pattern drops
        return any(rx.match(rel + "/") for rx in excludes)

    real_root = Path(os.path.realpath(root))
    visited = {real_root}

    def walk(folder: Path, real: Path, prefix: str, chain: tuple[Path, ...]) -> Iterator[tuple[Path, str]]:
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            out.append(
                SkippedFile(path=prefix.rstrip("/") or ".", reason=f"cannot list folder: {exc.strerror}")
            )
            return
        for name in names:
            path = folder / name
            rel = prefix + name
            try:
                mode = path.lstat().st_mode
            except OSError as exc:
                if wanted(rel):
                    out.append(SkippedFile(path=rel, reason=f"cannot read file: {exc.strerror}"))
                continue
            target_real = real / name
            if stat.S_ISLNK(mode):
                try:
                    mode = path.stat().st_mode
                except OSError as exc:
                    if not excluded(rel):
                        reason = (
                            "symbolic link loop"
                            if exc.errno == errno.ELOOP
                            else f"broken symbolic link (to {_readlink(path)})"
                        )
                        out.append(SkippedFile(path=rel, reason=reason))
                        log.warning("skipped %s: %s", path, reason)
                    continue
                target_real = Path(os.path.realpath(path))
                is_dir = stat.S_ISDIR(mode)
                if (pruned(rel) or excluded(rel)) if is_dir else not wanted(rel):
                    continue
                inside = target_real == real_root or real_root in target_real.parents
                skip: str | None = None
                if not inside and not follow_links_outside:
                    skip = (
                        f"symbolic link to {target_real}, outside the corpus folder "
                        "(set retrieval.follow_links_outside to index it)"
                    )
                elif is_dir and target_real in chain:
                    skip = f"symbolic link loop (to {target_real}, a folder above it)"
                elif is_dir and inside:
                    rel_target = target_real.relative_to(real_root).as_posix()
                    skip = f"symbolic link to the folder {rel_target or '.'}, already in the corpus"
                elif is_dir and target_real in visited:
                    skip = f"symbolic link to {target_real}, a folder already indexed"
                if skip is not None:
                    out.append(SkippedFile(path=rel, reason=skip))
                    log.warning("skipped %s: %s", path, skip)
                    continue
            if stat.S_ISDIR(mode):
                if pruned(rel):
                    continue
                visited.add(target_real)
                yield from walk(path, target_real, rel + "/", (*chain, target_real))
            elif not wanted(rel):
                continue
            elif stat.S_ISREG(mode):
                yield path, rel
            else:
                out.append(SkippedFile(path=rel, reason="not a regular file (FIFO, socket or device)"))

    yield from walk(root, real_root, "", (real_root,))


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # pragma: no cover - raced away
        return "?"


def load_corpus(
    root: Path,
    *,
    include: Sequence[str],
    exclude: Sequence[str],
    max_file_mb: float = MAX_FILE_MB,
    max_pdf_mb: float = MAX_PDF_MB,
    follow_links_outside: bool = False,
) -> LoadResult:
    """Load every matching file under ``root``; problems become ``skipped``/``warnings`` entries.

    Any failure reading, decoding or parsing one file skips that file with a reason (see
    :func:`iter_corpus_files` for links); the others load as usual.

    Args:
        root: The corpus folder.
        include: Glob patterns of files to load.
        exclude: Glob patterns of files (and folders) to leave out.
        max_file_mb: Skip files over this size (MB on disk), and files whose text exceeds it.
        max_pdf_mb: Skip PDF files over this size (MB on disk).
        follow_links_outside: Load symbolic links whose target is outside ``root``.

    Raises:
        InputError: ``root`` is not a folder.
    """
    if not root.is_dir():
        raise InputError(f"{root}: corpus folder does not exist")
    result = LoadResult()
    files = iter_corpus_files(
        root, include, exclude, follow_links_outside=follow_links_outside, skipped=result.skipped
    )
    for path, rel in files:
        try:
            doc = load_file(
                path, source=rel, warnings=result.warnings, max_file_mb=max_file_mb, max_pdf_mb=max_pdf_mb
            )
        except InputError as exc:
            result.skipped.append(SkippedFile(path=rel, reason=str(exc).removeprefix(f"{path}: ")))
            log.warning("skipped %s", exc)
            continue
        except ConfigError:
            raise
        except Exception as exc:  # untrusted input: any failure on one file skips that file
            reason = f"{type(exc).__name__}: {brief(exc)}"
            result.skipped.append(SkippedFile(path=rel, reason=reason))
            log.warning("skipped %s: %s", path, reason)
            continue
        if not doc.text.strip():
            result.skipped.append(SkippedFile(path=rel, reason="no text"))
            log.warning("skipped %s: no text", path)
            continue
        result.documents.append(doc)
    return result


def brief(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    message = " ".join(str(exc).split()) or repr(exc)
    return message if len(message) <= limit else message[: limit - 1] + "…"


def load_file(
    path: Path,
    *,
    source: str | None = None,
    warnings: list[str] | None = None,
    max_file_mb: float = MAX_FILE_MB,
    max_pdf_mb: float = MAX_PDF_MB,
) -> Document:
    """Load one file by its suffix (unknown suffixes are read as text).

    Args:
        path: The file.
        source: The document's source (default: the file name).
        warnings: Collects problems that do not skip the file (bad front matter).
        max_file_mb: Refuse files over this size (MB on disk) without reading them, and files
            whose extracted text exceeds it.
        max_pdf_mb: Refuse PDF files over this size (MB on disk).

    Raises:
        InputError: naming the file, when it is unreadable, too large, binary or not UTF-8, or
            a PDF that cannot be parsed.
    """
    source = source or path.name
    suffix = path.suffix.lower()
    try:
        info = path.stat()
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {exc.strerror}") from exc
    modified = info.st_mtime
    limit_mb, setting = (max_pdf_mb, "max_pdf_mb") if suffix == ".pdf" else (max_file_mb, "max_file_mb")
    if info.st_size > limit_mb * MB:
        raise InputError(
            f"{path}: file is {info.st_size / MB:,.1f} MB, over the {limit_mb:g} MB limit "
            f"(retrieval.{setting}); not read"
        )
    if suffix == ".pdf":
        from aiapp.retrieval._pdf import read_pdf

        text, title = read_pdf(path, max_chars=int(max_file_mb * MB))
        return Document(source=source, text=text, title=title or path.stem, kind="text", modified=modified)
    raw = _read_text(path, int(max_file_mb * MB))
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


def _read_text(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # bounded, even if the file grew after stat()
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {exc.strerror}") from exc
    if len(data) > max_bytes:
        raise InputError(f"{path}: file grew over the {max_bytes / MB:g} MB limit while being read")
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
            budget = [MAX_FRONT_MATTER_NODES]
            meta = {str(k): _jsonable(v, budget, path) for k, v in front.items()}
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


def _jsonable(value: Any, budget: list[int], path: Path) -> Any:
    budget[0] -= 1
    if budget[0] < 0:  # YAML aliases let a few lines expand to billions of values
        raise InputError(f"{path}: front matter expands to over {MAX_FRONT_MATTER_NODES:,} values")
    if isinstance(value, dict):
        return {str(k): _jsonable(v, budget, path) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, budget, path) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
