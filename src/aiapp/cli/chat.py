"""``aiapp chat``: a REPL over the RAG app, with conversation memory and feedback.

Commands inside the chat::

    /sources                  the sources of the last answer (* = cited)
    /feedback +1 "comment"    score the last answer (stored with its trace)
    /reset                    forget the conversation
    /help                     this list
    /exit                     leave (end of input works too)
"""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING

import typer

from aiapp.cli._common import ConfigOption, gateway

if TYPE_CHECKING:
    from aiapp.apps import Conversation

HELP = "commands: /sources  /feedback +1|-1 [comment]  /reset  /help  /exit   (anything else is a question)"


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    from aiapp.cli.ask import CorpusOption, KOption, ModelOption, PromptOption

    @app.command()
    def chat(
        prompt: str | None = PromptOption,
        model: str | None = ModelOption,
        corpus: str | None = CorpusOption,
        k: int = KOption,
        window: int = typer.Option(6, "--window", min=0, help="Recent turns sent with each question."),
        config: str | None = ConfigOption,
    ) -> None:
        """Chat with the indexed corpus: answers cite sources; history is kept; /help lists commands."""
        from aiapp.cli.ask import build_app, close_retriever

        with gateway(config) as gw:
            rag = build_app(gw, prompt=prompt, model=model, corpus=corpus, k=k, name="chat")
            try:
                repl(rag.conversation(window=window))
            finally:
                close_retriever(rag)


def repl(conversation: Conversation) -> None:
    """Read questions and commands from stdin until ``/exit`` or the end of input."""
    from aiapp.cli.ask import print_footer
    from aiapp.errors import AiappError, ProviderError

    rag = conversation.app
    typer.secho(f"chat: {rag.prompt.ref} on route {rag.route}. {HELP}", dim=True)
    while True:
        typer.echo("you> ", nl=False)
        line = sys.stdin.readline()
        if not line:  # end of input
            typer.echo()
            return
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if _command(text, conversation):
                return
            continue
        try:
            stream = conversation.stream(text)
            typer.echo("bot> ", nl=False)
            for delta in stream:
                typer.echo(delta, nl=False)
            typer.echo()
        except ProviderError as exc:
            typer.secho(f"\nprovider error: {exc}", err=True, fg="red")
            continue
        except AiappError as exc:  # a guard's refusal, an input problem: say so and keep chatting
            typer.secho(f"\nerror: {exc}", err=True, fg="red")
            continue
        if stream.answer is not None:
            print_footer(stream.answer)


def _command(text: str, conversation: Conversation) -> bool:
    """Run one ``/command``; return ``True`` to leave the chat."""
    from aiapp.cli.ask import print_sources
    from aiapp.errors import InputError

    try:
        parts = shlex.split(text)
    except ValueError as exc:
        typer.secho(f"cannot read that command: {exc}", fg="red")
        return False
    command, args = parts[0].lower(), parts[1:]
    if command in ("/exit", "/quit"):
        return True
    if command == "/help":
        typer.echo(HELP)
    elif command == "/reset":
        conversation.reset()
        typer.echo("conversation cleared")
    elif command == "/sources":
        if conversation.last is None:
            typer.echo("no answer yet")
        else:
            print_sources(conversation.last, cited_only=False)
    elif command == "/feedback":
        score = _score(args[0]) if args else None
        if score is None:
            typer.secho('usage: /feedback +1 "comment"  (a number: +1, -1, 0.5 ...)', fg="red")
            return False
        try:
            trace_id = conversation.feedback(score, " ".join(args[1:]) or None)
        except InputError as exc:
            typer.secho(str(exc), fg="red")
            return False
        typer.echo(f"feedback {score:+g} stored with trace {trace_id}")
    else:
        typer.secho(f"unknown command {command}. {HELP}", fg="red")
    return False


def _score(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
