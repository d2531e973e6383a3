"""PDF text extraction with pypdf (the only module that imports it).

A PDF is untrusted input: whatever pypdf raises on a damaged or hostile file (including
``RecursionError`` on deeply nested objects) becomes an :class:`InputError` naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiapp.errors import ConfigError, InputError


def read_pdf(path: Path, *, max_chars: int | None = None) -> tuple[str, str | None]:
    """The text of every page (pages separated by blank lines) and the PDF's title, if set.

    Args:
        path: The PDF file.
        max_chars: Give up once the extracted text exceeds this many characters.

    Raises:
        InputError: naming the file, when it is not a readable PDF, is encrypted, or its text
            exceeds ``max_chars``.
    """
    try:
        from pypdf import PdfReader
    except ImportError as exc:  # pragma: no cover - the retrieval extra installs it
        raise ConfigError("reading PDF files needs pypdf: pip install 'aiapp[retrieval]'") from exc
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise InputError(f"{path}: encrypted PDF")
        pages: list[str] = []
        size = 0
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            size += len(text)
            if max_chars is not None and size > max_chars:
                raise InputError(f"{path}: PDF text exceeds the limit of {max_chars:,} characters")
            pages.append(text)
        title = reader.metadata.title if reader.metadata is not None else None
    except InputError:
        raise
    except Exception as exc:  # any parser failure on untrusted input skips the file
        raise InputError(f"{path}: not a readable PDF ({type(exc).__name__}: {_brief(exc)})") from exc
    text = "\n\n".join(p for p in pages if p)
    return text, (title.strip() or None) if isinstance(title, str) else None


def _brief(exc: BaseException, limit: int = 200) -> str:
    message = " ".join(str(exc).split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
