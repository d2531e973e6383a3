"""``aiapp ask``: one question to the RAG app over an indexed corpus, with citations and a trace id."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aiapp.cli._common import ConfigOption, gateway, print_json

if TYPE_CHECKING:
    from aiapp.apps import Answer, RAGApp
    from aiapp.config import Settings
    from aiapp.gateway import Gateway
    from aiapp.types import Hit

DEFAULT_PROMPT_NAME = "support_answer"
"""The prompt ``ask`` and ``chat`` serve when ``--prompt`` is not given and the prompts directory has it."""

PromptOption = typer.Option(
    None, "--prompt", "-p", help="Prompt reference (default: support_answer, at its production label)."
)
ModelOption = typer.Option(
    None, "--model", "-m", help="Route name or provider/model (default: the prompt's)."
)
CorpusOption = typer.Option(None, "--corpus", help="Corpus/index name (default: retrieval.default_corpus).")
KOption = typer.Option(5, "--k", "-k", min=1, help="How many chunks to retrieve.")


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def ask(
        question: str = typer.Argument(..., help="The question ('-' reads stdin)."),
        as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
        prompt: str | None = PromptOption,
        model: str | None = ModelOption,
        corpus: str | None = CorpusOption,
        k: int = KOption,
        stream: bool = typer.Option(False, "--stream", help="Print the answer as it arrives."),
        config: str | None = ConfigOption,
    ) -> None:
        """Answer QUESTION from the indexed corpus, citing sources; prints the trace id."""
        if question == "-":
            question = sys.stdin.read().strip()
        with gateway(config) as gw:
            rag = build_app(gw, prompt=prompt, model=model, corpus=corpus, k=k, name="ask")
            try:
                if stream and not as_json:
                    answer_stream = rag.stream(question)
                    for delta in answer_stream:
                        typer.echo(delta, nl=False)
                    typer.echo()
                    if answer_stream.answer is not None:
                        print_sources(answer_stream.answer, cited_only=True)
                        print_footer(answer_stream.answer)
                    return
                answer = rag.ask(question)
            finally:
                close_retriever(rag)
        if as_json:
            print_json(answer.to_json())
            return
        typer.echo(answer.text)
        print_sources(answer, cited_only=True)
        print_footer(answer)


def build_app(
    gw: Gateway, *, prompt: str | None, model: str | None, corpus: str | None, k: int, name: str
) -> RAGApp:
    """The RAG app the CLI serves: the corpus index, the prompt, the route.

    Raises:
        PromptError: ``--prompt`` does not resolve.
        ConfigError: the corpus cannot be opened.
    """
    from aiapp.apps import RAGApp

    return RAGApp(
        gateway=gw,
        retriever=open_or_build_index(gw.settings, corpus),
        prompt=resolve_prompt(gw.settings, prompt),
        model=model,
        k=k,
        name=name,
    )


def resolve_prompt(settings: Settings, ref: str | None) -> Any:
    """``ref`` from the prompts directory; without one, ``support_answer`` if present, else the built-in."""
    from aiapp.apps import DEFAULT_PROMPT
    from aiapp.prompts import PromptRegistry

    if ref is not None:
        return PromptRegistry.from_settings(settings).get(ref)
    directory = Path(settings.prompts.dir)
    if (directory / DEFAULT_PROMPT_NAME).is_dir():
        return PromptRegistry(directory).get(DEFAULT_PROMPT_NAME)
    typer.secho(
        f"note: no {directory / DEFAULT_PROMPT_NAME}; using the built-in prompt {DEFAULT_PROMPT.ref}",
        err=True,
        dim=True,
    )
    return DEFAULT_PROMPT


def open_or_build_index(settings: Settings, corpus: str | None) -> Any:
    """Open the corpus index (``retrieval.default_corpus`` when ``corpus`` is ``None``).

    An index that was never built is built first from ``corpora/<name>/`` (once; later runs reuse it).
    """
    from aiapp.retrieval import Index

    index = Index.open(corpus, settings)
    if index.manifest is None and index.corpus_dir().is_dir():
        typer.secho(
            f"note: index {index.name!r} is empty; indexing {index.corpus_dir()}/ first", err=True, dim=True
        )
        index.ingest()
    return _Rooted(index, index.corpus_dir())


def close_retriever(rag: RAGApp) -> None:
    """Release the app's index (it stays on disk)."""
    close = getattr(rag.retriever, "close", None)
    if callable(close):
        close()


class _Rooted:
    """Report hit sources under the corpus folder (``corpora/ollama/faq.mdx``), as users find them."""

    def __init__(self, index: Any, root: Path) -> None:
        self.index = index
        self.root = root.as_posix().rstrip("/")
        self.name = str(getattr(index, "name", "") or type(index).__name__)

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        hits: list[Hit] = self.index.search(query, k=k)
        return [h.model_copy(update={"source": f"{self.root}/{h.source}"}) for h in hits]

    def close(self) -> None:
        self.index.close()


def print_sources(answer: Answer, *, cited_only: bool) -> None:
    """Print the sources (those the answer cites, or all given to the model)."""
    cited = {c.n for c in answer.citations}
    sources = answer.citations if cited_only else answer.sources
    if not sources:
        typer.secho("sources: none cited" if cited_only else "sources: none retrieved", dim=True)
        return
    typer.secho("sources:", bold=True)
    for source in sources:
        mark = "*" if source.n in cited and not cited_only else " "
        title = f"  {source.title}" if source.title else ""
        typer.echo(
            f" {mark}[{source.n}] {source.source}{title}  (score {source.score:.3f}, chunk {source.chunk_id})"
        )


def print_footer(answer: Answer) -> None:
    """One dim line on stderr: trace, prompt and hash, route, model, tokens, cost."""
    cost = "unknown" if answer.cost_usd is None else f"${answer.cost_usd:.6f}"
    typer.secho(
        f"trace: {answer.trace_id}  prompt: {answer.prompt} ({answer.prompt_hash})  route: {answer.route}  "
        + (f"model: {answer.model}  " if answer.model else "")
        + f"tokens: {answer.usage.input_tokens}+{answer.usage.output_tokens}  cost: {cost}",
        err=True,
        dim=True,
    )
