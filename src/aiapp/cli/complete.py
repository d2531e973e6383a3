"""``aiapp complete``: one call through the gateway."""

from __future__ import annotations

import sys

import typer

from aiapp.cli._common import ConfigOption, gateway, print_json


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def complete(
        text: str = typer.Argument(..., help="The user message ('-' reads stdin)."),
        model: str | None = typer.Option(None, "--model", "-m", help="Route name or provider/model."),
        system: str | None = typer.Option(None, "--system", "-s", help="A system message."),
        temperature: float | None = typer.Option(None, help="Sampling temperature."),
        max_tokens: int | None = typer.Option(None, help="Cap on output tokens."),
        stream: bool = typer.Option(False, "--stream", help="Print the reply as it arrives."),
        as_json: bool = typer.Option(False, "--json", help="Print the completion as JSON."),
        config: str | None = ConfigOption,
    ) -> None:
        """Send TEXT to a model route and print the reply and its trace id."""
        from aiapp.types import CallOptions, Message

        if text == "-":
            text = sys.stdin.read()
        messages = ([Message.system(system)] if system else []) + [Message.user(text)]
        options = CallOptions(temperature=temperature, max_tokens=max_tokens)
        with gateway(config) as gw:
            if stream and not as_json:
                trace_id = None
                for chunk in gw.stream(messages, model=model, options=options):
                    typer.echo(chunk.delta, nl=False)
                typer.echo()
                recent = gw.tracer.store.recent(1) if gw.tracer.store else []
                trace_id = recent[0].trace_id if recent else None
                typer.secho(f"trace: {trace_id}", err=True, dim=True)
                return
            reply = gw.complete(messages, model=model, options=options)
        if as_json:
            print_json(reply.model_dump(mode="json"))
            return
        typer.echo(reply.text)
        cost = "unknown" if reply.usage.cost_usd is None else f"${reply.usage.cost_usd:.6f}"
        typer.secho(
            f"trace: {reply.trace_id}  route: {reply.route}  model: {reply.deployment}  "
            f"tokens: {reply.usage.input_tokens}+{reply.usage.output_tokens}  cost: {cost}  "
            f"{reply.latency_ms:.1f} ms",
            err=True,
            dim=True,
        )
