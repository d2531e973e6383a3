"""The offline template route for synthetic sets: section headings become questions.

:class:`HeadingQuestionWriter` answers ``aiapp eval synth`` requests without a language model, so the
pipeline (sampling, structured output, dedup, support check, review) runs offline and
deterministically. What it writes is stilted and needs review; see ``evals/data/synth/README.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from aiapp.gateway import Model
from aiapp.types import CallOptions, Completion, Message, Usage

_CODE = re.compile(r"```.*?```", re.S)


_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def prose(text: str) -> str:
    """A chunk's prose: code blocks, headings, lists, tables and markup removed."""
    lines = [
        ln
        for ln in _CODE.sub(" ", text).splitlines()
        if ln.strip()
        and not ln.lstrip().startswith(("#", "|", "<", "---", "- ", "* ", ">"))
        and not re.match(r"\s*\d+\.\s", ln)
    ]
    return " ".join(_LINK.sub(r"\1", " ".join(lines)).replace("**", "").split())


class HeadingQuestionWriter(Model):
    """A deterministic offline route for synthetic sets: section headings become questions.

    For each excerpt it takes the section heading (a heading that is already a question is used as
    is; another becomes "What does the documentation say about <heading>?") and answers with the
    section's first prose sentences. ``multi-hop`` joins the questions of its two excerpts. It
    writes no ``howto`` or ``unanswerable`` pairs (it replies ``{"pairs": []}``), and it is a
    template, not a language model: use it to exercise the pipeline offline, review what it writes.
    """

    name = "local/heading-questions"

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """Write the pair for the excerpts in the last user message."""
        text = str(messages[-1].content)
        kind_match = re.search(r"^Kind: (\S+)", text, re.M)
        kind = kind_match.group(1) if kind_match else "factual"
        excerpts = re.findall(
            r'<excerpt id="\d+" source="([^"]*)" section="([^"]*)">\n(.*?)\n</excerpt>', text, re.S
        )
        pairs = [p for p in (self._pair(source, section, body) for source, section, body in excerpts) if p]
        out: list[dict[str, str]] = []
        if kind == "multi-hop" and len(pairs) >= 2 and pairs[0][0] != pairs[1][0]:
            (q1, a1), (q2, a2) = pairs[:2]
            out = [{"question": f"{q1.rstrip('?')}, and {_lower_first(q2)}", "answer": f"{a1} {a2}"}]
        elif kind == "factual" and pairs:
            out = [{"question": pairs[0][0], "answer": pairs[0][1]}]
        reply = json.dumps({"pairs": out})
        usage = Usage(input_tokens=len(text.split()), output_tokens=len(reply.split()), cost_usd=0.0)
        return Completion(text=reply, model=self.name, usage=usage, finish_reason="stop")

    @staticmethod
    def _pair(source: str, section: str, body: str) -> tuple[str, str] | None:
        heading = section.split(" > ")[-1].strip() if section else ""
        inline = re.findall(r"^#{1,6}\s+(.+)$", body, re.M)
        if not heading and inline:
            heading = inline[0].strip()
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", prose(body)) if _is_sentence(s)]
        if not heading or not sentences:
            return None
        answer = " ".join(sentences[:2])
        if heading.endswith("?"):
            return heading, answer
        page = Path(source).stem.replace("-", " ").replace("_", " ")
        page = page.upper() if len(page) <= 3 else page.title()
        return f"What does the {page} page say about {_lower_first(heading)}?", answer


def _lower_first(text: str) -> str:
    """Lower-case the first letter unless the first word is an acronym or a name in code."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


_NOT_PROSE = re.compile(r"[|{}]|\(\)|\w=|^[-*>\d]|\]\(")


def _is_sentence(text: str) -> bool:
    """Prose a person wrote: 5+ words, capitalised, ends like a sentence, no code or table syntax."""
    return (
        len(text.split()) >= 5
        and text[:1].isupper()
        and text.endswith((".", "!", "?"))
        and not _NOT_PROSE.search(text)
    )
