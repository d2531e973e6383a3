"""The console's page templates: Jinja2 files under ``aiapp/ui/templates``, autoescaped.

These are the console's own HTML pages, not prompt files: they render in an ordinary autoescaping
environment (prompts use the sandboxed one in :mod:`aiapp.prompts._render`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request

TEMPLATES = Path(__file__).with_name("templates")


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pretty(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


class Renderer:
    """Renders a named template with the request (for navigation and links)."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=_when, num=_num, pretty=_pretty)
        self.env.globals.update(urlencode=urlencode, svg=lambda text: Markup(text))

    def page(self, template: str, request: Request, **context: Any) -> str:
        """The rendered page."""
        return self.env.get_template(template).render(request=request, path=request.url.path, **context)

    def fragment(self, template: str, **context: Any) -> str:
        """A rendered partial (no request needed)."""
        return self.env.get_template(template).render(**context)
