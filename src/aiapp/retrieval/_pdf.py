"""PDF text extraction with pypdf (the only module that imports it)."""

from __future__ import annotations

import logging
from pathlib import Path

from aiapp.errors import ConfigError, InputError


def read_pdf(path: Path) -> tuple[str, str | None]:
    """The text of every page (pages separated by blank lines) and the PDF's title, if set.

    Raises:
        InputError: naming the file, when it is not a readable PDF or is encrypted.
    """
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError as exc:  # pragma: no cover - the retrieval extra installs it
        raise ConfigError("reading PDF files needs pypdf: pip install 'aiapp[retrieval]'") from exc
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise InputError(f"{path}: encrypted PDF")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata is not None else None
    except InputError:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from exc
    text = "\n\n".join(p for p in pages if p)
    return text, (title.strip() or None) if isinstance(title, str) else None
