"""A docs copilot built on aiapp agents — runs offline, end to end.

    .venv/bin/python examples/copilot.py                  # a small in-example BM25 retriever
    .venv/bin/python examples/copilot.py --index ollama   # the aiapp index `aiapp index ollama` built

Part 1 uses the offline ``local/extractive`` baseline. It cannot call tools, so the agent runs the
search tool on the question first (``prefetch``) and the baseline answers from the results.

Part 2 shows a tool-using copilot. A *scripted* model stands in for a tool-calling LLM (no key, no
network): it searches the docs, computes with the calculator, then files a note through a
side-effecting tool that needs a secret and human approval. Point ``model=`` at a real route (e.g.
``openai``) and the same agent runs unchanged.

Every run is a trace: the script prints the timeline; ``aiapp traces show ID`` prints it too.
The docs come from ``corpora/ollama`` when present, else the shared Ollama docs (MIT licence), else
a few built-in lines.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import Counter
from pathlib import Path

from aiapp.agents import Agent, ApprovalDecision, ApprovalRequest, AgentLimits, Secret, tool
from aiapp.agents.tools import calculator, search_tool
from aiapp.config import load_settings
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel
from aiapp.types import Hit, Message, Retriever, ToolCall

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN_DOCS = {
    "faq.md": (
        "## How can I specify the context window size?\n"
        "By default, Ollama uses a context window size of 4096 tokens.\n\n"
        "## How do I configure Ollama server?\n"
        "Ollama binds 127.0.0.1 port 11434 by default. Change the bind address with OLLAMA_HOST.\n\n"
        "## How does Ollama handle concurrent requests?\n"
        "Parallel request processing increases the context size by the number of parallel requests."
    )
}


class DocsRetriever:
    """A small BM25 retriever over Markdown sections — any ``Retriever`` (an aiapp index) fits here."""

    def __init__(self, docs: dict[str, str]) -> None:
        self.sections: list[tuple[str, str]] = []
        for source, text in docs.items():
            for part in re.split(r"\n(?=#{1,3} )", text):
                if part.strip():
                    self.sections.append((source, part.strip()))
        self.terms = [Counter(_words(text)) for _, text in self.sections]
        self.df = Counter(t for terms in self.terms for t in terms)
        self.avg = sum(sum(t.values()) for t in self.terms) / max(1, len(self.terms))

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        n = len(self.sections)
        scored: list[Hit] = []
        for (source, text), terms in zip(self.sections, self.terms, strict=True):
            length = sum(terms.values())
            score = 0.0
            for term in set(_words(query)):
                tf = terms.get(term, 0)
                if tf:
                    idf = math.log(1 + (n - self.df[term] + 0.5) / (self.df[term] + 0.5))
                    score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / self.avg))
            if score > 0:
                scored.append(Hit(text=text, score=score, source=source, chunk_id=f"{source}#{len(scored)}"))
        return sorted(scored, key=lambda h: -h.score)[:k]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", text.lower())


def load_docs() -> dict[str, str]:
    """The Ollama docs as {relative path: text}."""
    for folder in (ROOT / "corpora" / "ollama", ROOT.parent / "shared" / "data" / "docs_ollama" / "docs"):
        files = sorted(p for p in folder.rglob("*") if p.suffix in (".md", ".mdx")) if folder.is_dir() else []
        if files:
            return {str(p.relative_to(folder)): p.read_text(encoding="utf-8") for p in files}
    return dict(BUILT_IN_DOCS)


# -- part 2: a side-effecting tool with a secret, and a scripted stand-in for a tool-calling LLM ----

NOTES: list[str] = []


@tool(requires_approval=True)
def file_note(title: str, body: str, token: Secret) -> str:
    """File a note in the team's tracker.

    Args:
        title: A short title.
        body: The note.
    """
    assert token.get().startswith("tracker-")  # the secret reached the tool, never the model
    NOTES.append(f"{title}: {body}")
    return f"filed note #{len(NOTES)}"


def scripted_llm(messages: list[Message], options: object) -> list[ToolCall] | str:
    """Decides each move by rules, the way a tool-calling model would."""
    results = [m.content for m in messages if m.role == "tool"]
    if not results:
        return [
            ToolCall(id="s1", name="search", arguments=json.dumps({"query": "default context window size"}))
        ]
    if len(results) == 1:
        found = re.search(r"context window size of (\d+) tokens", results[0])
        size = found.group(1) if found else "2048"
        return [ToolCall(id="c1", name="calculator", arguments=json.dumps({"expression": f"{size} * 4"}))]
    if len(results) == 2:
        body = f"4 parallel requests with the default window need a {results[1]}-token context."
        return [
            ToolCall(id="n1", name="file_note", arguments=json.dumps({"title": "capacity", "body": body}))
        ]
    return (
        f"With 4 parallel requests each model's context grows to {results[1]} tokens "
        f"(4 × the default window) [1]. I filed a note for the team ({results[2]})."
    )


def approve(request: ApprovalRequest) -> ApprovalDecision:
    """A human would answer here (``aiapp agent`` asks y/N); the example approves and says so."""
    print(f"  approval asked: {request.tool}({json.dumps(request.arguments)}) -> approved")
    return ApprovalDecision(True, "approved in the example", by="example")


def print_timeline(gateway: Gateway, trace_id: str | None) -> None:
    """The run's spans, nested — what ``aiapp traces show`` prints."""
    spans = gateway.tracer.store.trace(trace_id) if gateway.tracer.store and trace_id else []
    depth: dict[str, int] = {}
    for span in spans:
        depth[span.span_id] = depth.get(span.parent_id or "", -1) + 1
        detail = span.input if span.kind in ("tool", "approval") else ""
        print(
            f"  {'  ' * depth[span.span_id]}[{span.kind}] {span.name} {span.status} {detail or ''}".rstrip()
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="search this aiapp index instead of the in-example retriever")
    args = parser.parse_args()
    if args.index:
        from aiapp.retrieval import Index

        retriever: Retriever = Index.open(args.index)
        print(f"searching the aiapp index {args.index!r}")
    else:
        docs = load_docs()
        retriever = DocsRetriever(docs)
        print(f"indexed {len(docs)} documents in memory")
    search = search_tool(retriever, k=3)

    print("\n1) offline baseline (local/extractive) with the search tool run first")
    gateway = Gateway(load_settings())
    baseline = Agent(gateway=gateway, model="local", tools=[search, calculator], prefetch=["search"])
    run = baseline.run("Which port does Ollama bind to by default?")
    print(f"  answer: {run.output}\n  stop: {run.stop_reason}, trace: {run.trace_id}")
    print_timeline(gateway, run.trace_id)

    print("\n2) a tool-using copilot (scripted model): search, calculate, file a note with approval")
    gateway = Gateway(
        load_settings(), models={"copilot": FakeModel(default=scripted_llm, name="scripted/copilot")}
    )
    copilot = Agent(
        gateway=gateway,
        model="copilot",
        tools=[search, calculator, file_note],
        allow=["file_note"],  # side-effecting tools run only when granted...
        approval=approve,  # ...and this one also asks a human first
        secrets={"token": "tracker-s3cr3t"},
        limits=AgentLimits(max_steps=6, max_tool_calls_per_tool=3),
    )
    run = copilot.run(
        "With 4 parallel requests and the default context window, what context size does a model get?",
        success=lambda r: "16384" in (r.output or ""),
    )
    print(f"  answer: {run.output}")
    print(
        f"  success: {run.success}, steps: {run.steps_used}, tool calls: {len(run.tool_calls)}, notes: {NOTES}"
    )
    print(f"  stop: {run.stop_reason}, trace: {run.trace_id}")
    print_timeline(gateway, run.trace_id)


if __name__ == "__main__":
    main()
