"""``aiapp index`` and ``aiapp search``: build an index from ``corpora/<name>/`` and query it."""

from __future__ import annotations

from typing import Any

import typer

from aiapp.cli._common import ConfigOption, console, print_json


def register(app: typer.Typer) -> None:
    """Add the commands to ``app``."""

    @app.command("index")
    def index_command(
        corpus: str | None = typer.Argument(
            None, help="Corpus name under corpora/ (default: retrieval.default_corpus)."
        ),
        path: str | None = typer.Option(
            None, "--path", "-p", help="Index this folder instead of corpora/CORPUS."
        ),
        rebuild: bool = typer.Option(False, "--rebuild", help="Re-embed everything even if nothing changed."),
        as_json: bool = typer.Option(False, "--json", help="Print the ingest report as JSON."),
        config: str | None = ConfigOption,
    ) -> None:
        """Ingest a corpus: only new and changed files are embedded; removed files are dropped."""
        from aiapp.config import load_settings
        from aiapp.retrieval import Index

        settings = load_settings(config)
        with Index.open(corpus, settings) as index:
            if as_json:
                report = index.ingest(path, rebuild=rebuild)
            else:
                report = _ingest_with_progress(index, path, rebuild)
        if as_json:
            print_json(report.model_dump(mode="json"))
            return
        _print_report(report)

    @app.command("search")
    def search_command(
        query: str = typer.Argument(..., help="What to look for."),
        k: int = typer.Option(5, "--k", "-k", help="How many hits.", min=1),
        mode: str = typer.Option("hybrid", "--mode", "-m", help="hybrid, dense or sparse (BM25)."),
        corpus: str | None = typer.Option(
            None, "--corpus", help="Index name (default: retrieval.default_corpus)."
        ),
        filters: list[str] = typer.Option(
            [],
            "--filter",
            "-f",
            help="KEY=VALUE payload condition, e.g. tags=gpu or source=docs/faq.mdx (repeatable).",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print hits as JSON."),
        config: str | None = ConfigOption,
    ) -> None:
        """Search an index and print the best chunks with their source paths."""
        from aiapp.config import load_settings
        from aiapp.errors import InputError
        from aiapp.gateway import Gateway
        from aiapp.retrieval import Index

        if mode not in ("hybrid", "dense", "sparse"):
            raise InputError(f"unknown --mode {mode!r} (use hybrid, dense or sparse)")
        spec: dict[str, Any] = {}
        for item in filters:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise InputError(f"--filter must be KEY=VALUE, got {item!r}")
            spec.setdefault(key, []).append(value)
        flat = {k: v[0] if len(v) == 1 else v for k, v in spec.items()}
        settings = load_settings(config)
        with Gateway(settings) as gw, Index.open(corpus, settings, tracer=gw.tracer) as index:
            hits = index.search(query, k=k, mode=mode, filter=flat or None)  # type: ignore[arg-type]
        if as_json:
            print_json([h.model_dump(mode="json") for h in hits])
            return
        if not hits:
            typer.echo("no hits")
            return
        out = console()
        for rank, hit in enumerate(hits, 1):
            heading = " > ".join(hit.metadata.get("headings") or [])
            out.print(
                f"[bold]{rank}. {hit.source}[/bold]  [dim]{hit.score:.4f}  {heading}[/dim]", highlight=False
            )
            text = " ".join(hit.text.split())
            out.print(f"   {text[:300]}{'…' if len(text) > 300 else ''}", markup=False, highlight=False)
        out.print(f"[dim]corpus version {hits[0].corpus_version}[/dim]")


def _ingest_with_progress(index: Any, path: str | None, rebuild: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    labels = {"load": "loading files", "chunk": "chunking", "embed": "embedding", "write": "writing"}
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        return index.ingest(path, rebuild=rebuild, progress=progress)


def _print_report(report: Any) -> None:
    from rich.table import Table

    table = Table(title=f"index {report.index}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("corpus", report.corpus)
    table.add_row("added / changed / removed / unchanged",
                  f"{report.added} / {report.changed} / {report.removed} / {report.unchanged}")  # fmt: skip
    table.add_row("chunks", f"{report.chunks_total} ({report.chunks_embedded} embedded, "
                  f"{report.embeddings_cached} from cache)")  # fmt: skip
    table.add_row("corpus version", f"{report.corpus_version} (was {report.previous_version or '-'})")
    if report.rebuilt:
        table.add_row("rebuilt", report.reason or "yes")
    if report.skipped:
        table.add_row("skipped files", f"{len(report.skipped)} (listed below)")
    table.add_row("time", f"{report.duration_s:.2f} s")
    console().print(table)
    for skipped in report.skipped:
        typer.secho(f"skipped {skipped.path}: {skipped.reason}", err=True, fg="yellow")
    for warning in report.warnings:
        typer.secho(f"warning: {warning}", err=True, fg="yellow")
