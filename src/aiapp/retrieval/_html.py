"""HTML to Markdown-ish text with the standard library: headings become ``#`` lines, scripts go."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {
    "p", "div", "section", "article", "li", "ul", "ol", "br", "tr", "table", "pre", "blockquote",
    "header", "footer", "main", "dd", "dt", "hr", "figure", "figcaption",
}  # fmt: skip
_SKIP = {"script", "style", "noscript", "template", "svg", "head"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.headings: list[str] = []
        self._skip = 0
        self._in_title = False
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        if tag == "title":
            self._in_title = True
        elif tag in _HEADINGS:
            self.parts.append("\n\n" + "#" * _HEADINGS[tag] + " ")
            self._heading = []
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self._skip:
            self._skip -= 1
        if tag == "title":
            self._in_title = False
        elif tag in _HEADINGS:
            if self._heading is not None:
                self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None
            self.parts.append("\n\n")
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
            return
        if self._skip:
            return
        if self._heading is not None:
            self._heading.append(data)
            data = " ".join(data.split())
        self.parts.append(data)


def html_to_markdown(html: str) -> tuple[str, str | None, list[str]]:
    """Convert HTML to text with ``#`` headings; returns (text, title, headings)."""
    parser = _Extractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    title = " ".join(parser.title.split()) or (parser.headings[0] if parser.headings else None)
    return text, title, parser.headings
