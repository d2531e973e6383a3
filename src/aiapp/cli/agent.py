"""``aiapp agent``: run a task with tools, printing each step, with a y/N prompt for approvals."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import typer

from aiapp.cli._common import ConfigOption, gateway, print_json
from aiapp.errors import InputError

if TYPE_CHECKING:
    from aiapp.agents import AgentStep, ApprovalDecision, ApprovalRequest


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def agent(
        task: str = typer.Argument(..., help="What to do ('-' reads stdin)."),
        tools: str = typer.Option(
            "",
            "--tools",
            "-t",
            help="Comma-separated tools: search, calculator, sql, http (default: calculator; search when "
            "the index exists — `aiapp index` builds the demo; sql with --db; http with --allow-url).",
        ),
        model: str | None = typer.Option(None, "--model", "-m", help="Route name or provider/model."),
        index: str | None = typer.Option(
            None, "--index", help="Index the search tool searches (default: retrieval.default_corpus)."
        ),
        db: str | None = typer.Option(None, "--db", help="SQLite file the sql tool reads (read-only)."),
        allow_url: list[str] = typer.Option(
            [],
            "--allow-url",
            help="URL prefix or host the http tool may fetch (repeatable; none by default).",
        ),
        approve: bool = typer.Option(
            False, "--approve", help="Ask y/N on the terminal before every tool call, not only risky ones."
        ),
        max_steps: int = typer.Option(10, "--max-steps", help="Most model calls."),
        max_cost: float | None = typer.Option(None, "--max-cost", help="Spend cap in USD."),
        user: str = typer.Option("default", "--user", help="Whose run (scopes memory)."),
        as_json: bool = typer.Option(False, "--json", help="Print the run as JSON."),
        config: str | None = ConfigOption,
    ) -> None:
        """Run TASK with an agent and print its steps, answer and trace id.

        Tools that need approval (http) ask on the terminal; with --approve every call does. Without a
        terminal to ask, such calls are denied. A model without native tool calling (the offline
        local/extractive baseline) gets the ReAct text protocol, and the search tool is run on the
        task first so it can answer from the results.
        """
        from aiapp.agents import build_agent, open_retriever

        if task == "-":
            task = sys.stdin.read()
        names = [n.strip() for n in tools.split(",") if n.strip()]
        with gateway(config) as gw:
            retriever = None
            if not names:  # calculator, plus whatever the options make available
                retriever = open_retriever(gw, index, required=index is not None)
                names = ["calculator"] + (["search"] if retriever is not None else [])
                names += (["sql"] if db else []) + (["http"] if allow_url else [])
            if "sql" in names and not db:
                raise InputError("the sql tool needs --db PATH to a SQLite file")
            if "http" in names and not allow_url:
                raise InputError("the http tool is off until you give --allow-url PREFIX (repeatable)")
            agent_ = build_agent(
                gw,
                route=model,
                tools=names,
                index=index,
                retriever=retriever,
                db=db,
                allow_urls=allow_url,
                approve_all=approve,
                approval=_ask if sys.stdin.isatty() or approve else None,
                max_steps=max_steps,
                max_cost_usd=max_cost,
                name="cli-agent",
            )
            stream = agent_.stream(task, user=user)
            for step in stream:
                if not as_json:
                    _print_step(step)
            run = stream.run
        if run is None:  # pragma: no cover - the stream always sets it
            raise typer.Exit(1)
        if as_json:
            print_json({**run.model_dump(mode="json"), "summary": run.summary()})
            return
        typer.echo(run.output if run.output is not None else f"(no answer: {run.stop_reason} — {run.detail})")
        cost = "unknown" if run.usage.cost_usd is None else f"${run.usage.cost_usd:.6f}"
        typer.secho(
            f"trace: {run.trace_id}  stop: {run.stop_reason}  steps: {run.steps_used}  "
            f"tool calls: {len(run.tool_calls)} ({len(run.tool_errors)} failed)  "
            f"tokens: {run.usage.input_tokens}+{run.usage.output_tokens}  cost: {cost}",
            err=True,
            dim=True,
        )
        if not run.ok:
            raise typer.Exit(1)


def _ask(request: ApprovalRequest) -> ApprovalDecision:
    from aiapp.agents import ApprovalDecision

    args = json.dumps(request.arguments, ensure_ascii=False, default=str)
    approved = typer.confirm(f"  allow {request.tool}({args})?", default=False, err=True)
    return ApprovalDecision(
        approved, "approved at the terminal" if approved else "denied at the terminal", by="cli"
    )


def _print_step(step: AgentStep) -> None:
    label = "prefetch" if step.index == 0 else f"step {step.index}"
    if step.final:
        typer.secho(f"{label}: final answer", err=True, dim=True)
        return
    for record in step.tool_calls:
        outcome = record.result if record.ok else f"{record.status}: {record.error}"
        outcome = " ".join(outcome.split())
        typer.secho(
            f"{label}: {record.tool} {record.arguments} → {outcome[:200]}{'…' if len(outcome) > 200 else ''}",
            err=True,
            dim=True,
        )
