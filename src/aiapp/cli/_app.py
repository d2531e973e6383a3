"""The root Typer app. Command modules register themselves here; heavy imports stay inside commands."""

from __future__ import annotations

import sys

import typer

from aiapp.errors import AiappError

app = typer.Typer(
    name="aiapp",
    help="Build, run and evaluate LLM applications. Works offline on the local/extractive baseline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from aiapp.cli import agent, ask, chat, complete, keys, models, prompts, retrieval, traces
    from aiapp.cli import eval as eval_cli
    from aiapp.cli import serve as serve_cli

    agent.register(app)
    ask.register(app)
    chat.register(app)
    complete.register(app)
    eval_cli.register(app)
    keys.register(app)
    models.register(app)
    prompts.register(app)
    retrieval.register(app)
    serve_cli.register(app)
    traces.register(app)
    from aiapp.cli import review, ui  # aiapp review, aiapp ui (issue 17)

    review.register(app)
    ui.register(app)
    from aiapp.cli import rollout  # aiapp rollout (issue 18)

    rollout.register(app)


_register()


def main() -> None:
    """Entry point: user errors print one clear line and exit 2; provider failures exit 3."""
    from aiapp.errors import ProviderError, UserError

    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(2)
    except ProviderError as exc:
        typer.secho(f"provider error: {exc}", err=True, fg="red")
        sys.exit(3)
    except AiappError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(1)
