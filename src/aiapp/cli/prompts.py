"""``aiapp prompts``: list, show, check, diff and render versioned prompt files; promote and roll back labels."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aiapp.cli._common import ConfigOption, console, print_json

if TYPE_CHECKING:
    from aiapp.prompts import Prompt, PromptRegistry

prompts_app = typer.Typer(
    help="Versioned prompt files: list, show, check, diff, render, promote, rollback.", no_args_is_help=True
)

DirOption = typer.Option(
    None, "--dir", "-d", help="Prompts directory (default: prompts.dir from the config)."
)


def register(app: typer.Typer) -> None:
    """Add the command group to ``app``."""
    from aiapp.cli.prompts_optimize import register as register_optimize  # optimize (issue 19)
    from aiapp.cli.prompts_sync import register as register_sync  # push/pull --to/--from langfuse

    register_sync(prompts_app)
    register_optimize(prompts_app)
    app.add_typer(prompts_app, name="prompts")


def _registry(directory: Path | None, config: str | None) -> PromptRegistry:
    from aiapp.config import load_settings
    from aiapp.prompts import PromptRegistry

    return PromptRegistry(directory if directory is not None else load_settings(config).prompts.dir)


@prompts_app.command("list")
def list_prompts(
    directory: Path | None = DirOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ConfigOption,
) -> None:
    """List every prompt version with its labels, content hash and default model."""
    registry = _registry(directory, config)
    rows: list[dict[str, Any]] = []
    for name in registry.names():
        labels = registry.labels(name)
        splits = [e for e in registry.entries() if e.name == name and e.is_split]
        loaded = {p.version: p for p in registry if p.name == name}
        for version in registry.versions(name):
            prompt = loaded.get(version)
            plain = [
                label
                for label, v in labels.items()
                if v == version and label not in {e.label for e in splits}
            ]
            shares = [  # a split label shows each arm's share in force (after automatic rollbacks)
                f"{e.label} {share * 100:g}%"
                for e in splits
                for v, share in e.weights(registry.overrides(e))
                if v == version
            ]
            rows.append(
                {
                    "ref": f"{name}@v{version}",
                    "labels": plain + shares,
                    "hash": prompt.content_hash if prompt else None,
                    "model": prompt.model if prompt else None,
                    "description": prompt.description if prompt else "",
                    "ok": prompt is not None,
                }
            )
    if as_json:
        print_json(rows)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"prompts in {registry.directory}"))
    for column in ("ref", "labels", "hash", "model", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            escape(row["ref"]),
            escape(", ".join(row["labels"])),
            row["hash"] or "[red]invalid[/red]",
            escape(row["model"] or ""),
            escape(row["description"]),
        )
    console().print(table)
    if registry.problems:
        typer.secho(f"{len(registry.problems)} problem(s): run `aiapp prompts check`", err=True, fg="yellow")


@prompts_app.command("show")
def show(
    ref: str = typer.Argument(..., help="name, name@vN or name@label."),
    directory: Path | None = DirOption,
    as_json: bool = typer.Option(False, "--json", help="Print the validated prompt as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Show one prompt version: where it lives, its labels and hash, and its file."""
    registry = _registry(directory, config)
    prompt = registry.get(ref)
    labels = [label for label, v in registry.labels(prompt.name).items() if v == prompt.version]
    if as_json:
        data = prompt.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        print_json(
            {"ref": prompt.ref, "hash": prompt.content_hash, "path": prompt.path, "labels": labels, **data}
        )
        return
    typer.secho(f"{prompt.ref}  hash {prompt.content_hash}  labels: {', '.join(labels) or '-'}", bold=True)
    typer.secho(f"{prompt.path}", dim=True)
    typer.echo(prompt.source or "")


@prompts_app.command("check")
def check(
    directory: Path | None = DirOption,
    as_json: bool = typer.Option(False, "--json", help="Print problems as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Validate every prompt file and label; print one line per problem and exit 1 if any.

    Checks: YAML syntax, unknown or missing keys, value types, template syntax, undefined template
    variables, access to Python internals (sandbox escapes), rendering with sample values and
    examples, example outputs against the output schema, and labels pointing at missing versions.
    """
    from aiapp.config import load_settings
    from aiapp.errors import ConfigError

    registry = _registry(directory, config)
    try:
        routes: Any = load_settings(config).routes  # label shadows name routes
    except ConfigError:
        routes = None  # a broken config is `aiapp models --check`'s to report, not this command's
    problems = registry.check(routes=routes)
    if as_json:
        print_json([{"path": p.path, "line": p.line, "message": p.message} for p in problems])
    else:
        for problem in problems:
            typer.echo(str(problem))
    if problems:
        typer.secho(f"{len(problems)} problem(s) in {registry.directory}", err=True, fg="red")
        raise typer.Exit(1)
    versions = sum(1 for _ in registry)
    labels = len(registry.all_labels())
    if not as_json:
        typer.echo(
            f"ok: {len(registry.names())} prompts, {versions} versions, {labels} labels in {registry.directory}"
        )


@prompts_app.command("diff")
def diff(
    ref_a: str = typer.Argument(..., help="The old version (name@vN or name@label)."),
    ref_b: str = typer.Argument(..., help="The new version."),
    directory: Path | None = DirOption,
    config: str | None = ConfigOption,
) -> None:
    """Show a unified diff between two prompt versions' files."""
    registry = _registry(directory, config)
    a, b = registry.get(ref_a), registry.get(ref_b)
    lines = list(
        difflib.unified_diff(
            _text(a).splitlines(keepends=True),
            _text(b).splitlines(keepends=True),
            fromfile=f"{a.ref} ({a.path})",
            tofile=f"{b.ref} ({b.path})",
        )
    )
    if not lines:
        typer.echo(f"{a.ref} and {b.ref} are identical")
        return
    for line in lines:
        color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        typer.secho(line.rstrip("\n"), fg=color)
    same = "same" if a.content_hash == b.content_hash else "different"
    typer.secho(f"content hash: {a.content_hash} → {b.content_hash} ({same})", dim=True)


@prompts_app.command("render")
def render(
    ref: str = typer.Argument(..., help="name, name@vN or name@label."),
    var: list[str] = typer.Option(
        [], "--var", "-v", help="A variable: key=value (JSON for non-string types), or key=@file."
    ),
    directory: Path | None = DirOption,
    as_json: bool = typer.Option(False, "--json", help="Print the messages as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Render a prompt's messages with variables, in the sandbox, without calling a model."""
    registry = _registry(directory, config)
    prompt = registry.get(ref)
    messages = prompt.render(_parse_vars(prompt, var))
    if as_json:
        print_json(
            {"ref": prompt.ref, "hash": prompt.content_hash, "messages": [m.to_openai() for m in messages]}
        )
        return
    for message in messages:
        typer.secho(f"[{message.role}]", bold=True)
        typer.echo(message.content)
        typer.echo()


def _parse_vars(prompt: Prompt, pairs: list[str]) -> dict[str, Any]:
    from aiapp.errors import InputError

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--var {pair!r}: write key=value")
        if raw.startswith("@"):
            try:
                raw = Path(raw[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError(f"--var {key}: cannot read {raw[1:]}: {exc.strerror}") from None
        spec = prompt.variables.get(key)
        if spec is None or spec.type == "string":
            values[key] = raw  # undeclared names are reported by render with the declared list
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            if spec.type != "any":
                raise InputError(
                    f"--var {key}: {spec.type} values are written as JSON, got {raw!r}"
                ) from None
            values[key] = raw
    return values


@prompts_app.command("promote")
def promote_cmd(
    ref: str = typer.Argument(..., help="The version to serve: name@vN."),
    label: str = typer.Option("production", "--label", "-l", help="The label to change."),
    directory: Path | None = DirOption,
    as_json: bool = typer.Option(False, "--json", help="Print the change as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Serve a version under a label: one line of labels.yaml changes (comments kept, atomic write).

    A plain entry gets the new version; a split gives the promoted arm all the weight.
    """
    from aiapp.prompts import promote

    _print_change(promote(_directory(directory, config), ref, label=label), as_json)


@prompts_app.command("rollback")
def rollback_cmd(
    name: str = typer.Argument(..., help="The prompt name."),
    label: str = typer.Option("production", "--label", "-l", help="The label to change."),
    to: str | None = typer.Option(None, "--to", help="The version to go back to (vN)."),
    arm: str | None = typer.Option(None, "--arm", help="The split's arm to drop to 0 (default: the canary)."),
    directory: Path | None = DirOption,
    as_json: bool = typer.Option(False, "--json", help="Print the change as JSON."),
    config: str | None = ConfigOption,
) -> None:
    """Roll a label back: a split's canary (or --arm) to weight 0, or a plain entry to --to
    (default: the previous version). One line of labels.yaml changes."""
    from aiapp.prompts import rollback

    change = rollback(
        _directory(directory, config), name, label=label, to=_version(to, "--to"), arm=_version(arm, "--arm")
    )
    _print_change(change, as_json)


def _directory(directory: Path | None, config: str | None) -> Path:
    from aiapp.config import load_settings

    return directory if directory is not None else load_settings(config).prompts.dir


def _version(text: str | None, option: str) -> int | None:
    from aiapp.errors import InputError

    if text is None:
        return None
    digits = text.strip().lower().removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise InputError(f"{option} takes a version like v2, got {text!r}")
    return int(digits)


def _print_change(change: Any, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "path": change.path,
                "summary": change.summary,
                "lines": [{"line": n, "before": b, "after": a} for n, b, a in change.lines],
            }
        )
        return
    if not change.lines:
        typer.echo(f"{change.path}: nothing to change ({change.summary})")
        return
    typer.secho(change.summary, bold=True)
    for number, before, after in change.lines:
        typer.echo(f"{change.path}:{number}")
        typer.secho(f"- {before}", fg="red")
        typer.secho(f"+ {after}", fg="green")


def _text(prompt: Prompt) -> str:
    if prompt.source is not None:
        return prompt.source
    import yaml

    return str(yaml.safe_dump(prompt.model_dump(mode="json", by_alias=True), sort_keys=False))
