"""``aiapp prompts push --to langfuse`` / ``aiapp prompts pull --from langfuse``: sync prompt files
and labels with Langfuse, git staying the source of truth.

A prompt file ``prompts/<name>/vN.yaml`` is Langfuse version ``N`` of ``<name>``: a chat prompt
whose messages are the file's (so Langfuse's playground and UI show them) and whose
``config["aiapp"]`` carries the file's exact text and content hash, so a pull writes back the same
bytes. Labels in ``labels.yaml`` (plain ``name@vN`` entries) are Langfuse's deployment labels;
Langfuse's own ``latest`` is never synced.

Both commands plan first and change nothing when any step conflicts:

* **push** creates the versions Langfuse lacks (in order, so the numbers match) and moves labels to
  where ``labels.yaml`` has them. A version that exists in Langfuse with other content is a
  conflict (versions are immutable): it is shown as a diff and nothing is pushed.
* **pull** writes versions that exist only in Langfuse and applies label moves made there. It
  refuses, showing the diff, to overwrite a local change: a version file whose content differs
  from Langfuse's, or a ``labels.yaml`` with uncommitted edits (``git status``; outside a git
  checkout every label change counts as one). What it writes is an ordinary working-tree change
  to review and commit.

Keys and host come from ``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY`` and ``LANGFUSE_HOST``.
"""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aiapp.cli._common import ConfigOption, print_json

if TYPE_CHECKING:
    from aiapp.prompts import PromptRegistry
    from aiapp.tracing._langfuse import LangfusePrompts

_DIR = typer.Option(None, "--dir", "-d", help="Prompts directory (default: prompts.dir from the config).")
_NAME = typer.Option(None, "--name", "-n", help="Only these prompts (repeatable).")
_DRY = typer.Option(False, "--dry-run", help="Show the plan; change nothing.")
_JSON = typer.Option(False, "--json", help="Print the plan as JSON.")


def register(prompts_app: typer.Typer) -> None:
    """Add ``push`` and ``pull`` to the ``aiapp prompts`` group."""
    prompts_app.command("push")(push)
    prompts_app.command("pull")(pull)


@dataclass
class Plan:
    """What a push or pull would do, and what stops it."""

    create: list[str] = field(default_factory=list)  # name@vN
    write: list[str] = field(default_factory=list)  # files (pull)
    labels: list[str] = field(default_factory=list)  # "label: name v1 -> v2"
    conflicts: list[str] = field(default_factory=list)  # diffs, ready to print

    def to_json(self) -> dict[str, Any]:
        return {
            "create": self.create,
            "write": self.write,
            "labels": self.labels,
            "conflicts": self.conflicts,
        }


def push(
    to: str = typer.Option(..., "--to", help="Where to push: langfuse."),
    directory: Path | None = _DIR,
    names: list[str] | None = _NAME,
    dry_run: bool = _DRY,
    as_json: bool = _JSON,
    config: str | None = ConfigOption,
) -> None:
    """Push prompt versions and labels to Langfuse (refuses, with a diff, if Langfuse differs)."""
    _backend(to)
    registry = _registry(directory, config)
    remote = _remote()
    try:
        plan, steps = _plan_push(registry, remote, names)
        _finish(plan, dry_run=dry_run, as_json=as_json, verb="push")
        for step in steps:
            step()
    finally:
        remote.close()
    if not as_json:
        typer.echo(
            f"pushed {len(plan.create)} version(s), {len(plan.labels)} label change(s) to {remote.host}"
        )


def pull(
    source: str = typer.Option(..., "--from", help="Where to pull from: langfuse."),
    directory: Path | None = _DIR,
    names: list[str] | None = _NAME,
    dry_run: bool = _DRY,
    as_json: bool = _JSON,
    config: str | None = ConfigOption,
) -> None:
    """Pull prompt versions and labels from Langfuse (refuses, with a diff, to overwrite local changes)."""
    _backend(source)
    registry = _registry(directory, config)
    remote = _remote()
    try:
        plan, steps = _plan_pull(registry, remote, names)
    finally:
        remote.close()
    _finish(plan, dry_run=dry_run, as_json=as_json, verb="pull")
    for step in steps:
        step()
    if not as_json:
        typer.echo(
            f"pulled {len(plan.write)} file(s), {len(plan.labels)} label change(s); review with git diff"
        )


# -- planning --------------------------------------------------------------------------------


def _plan_push(
    registry: PromptRegistry, remote: LangfusePrompts, only: list[str] | None
) -> tuple[Plan, list[Callable[[], Any]]]:
    plan, steps = Plan(), list[Callable[[], Any]]()
    remote_versions = remote.names()
    for name in _selected(registry.names(), only):
        local_labels = _labels(registry, name)
        have = list(remote_versions.get(name, []))
        for version in registry.versions(name):
            prompt = registry.get(name, version=version)
            text = prompt.source or ""
            wanted = sorted(label for label, v in local_labels.items() if v == version)
            found = remote.get(name, version) if version in have else None
            if found is None:
                expected = (max(have) if have else 0) + 1
                if version != expected:
                    plan.conflicts.append(
                        f"{name}@v{version}: Langfuse would number it v{expected} (it has "
                        f"{', '.join(f'v{v}' for v in have) or 'no versions'}); versions must match"
                    )
                    continue
                have.append(version)
                plan.create.append(f"{name}@v{version}")
                steps.append(_creator(remote, name, version, prompt, text, wanted))
                continue
            theirs = _file_text(found)
            if found.config.get("aiapp", {}).get("hash") != prompt.content_hash and theirs != text:
                plan.conflicts.append(_diff(theirs, text, f"langfuse:{name}@v{version}", prompt.path or name))
                continue
            if sorted(found.labels) != wanted:
                plan.labels.append(f"{name} v{version}: {sorted(found.labels)} -> {wanted}")
                steps.append(partial(remote.set_labels, name, version, wanted))
    return plan, steps


def _plan_pull(
    registry: PromptRegistry, remote: LangfusePrompts, only: list[str] | None
) -> tuple[Plan, list[Callable[[], Any]]]:
    from aiapp.prompts import LABELS_FILE

    plan, steps = Plan(), list[Callable[[], Any]]()
    directory = Path(registry.directory)
    label_moves: list[tuple[str, str, int]] = []
    for name, versions in sorted(remote.names().items()):
        if only and name not in only:
            continue
        local_versions = set(registry.versions(name)) if name in registry.names() else set()
        remote_labels: dict[str, int] = {}
        for version in versions:
            found = remote.get(name, version)
            if found is None:
                continue
            for label in found.labels:
                remote_labels[label] = version
            theirs = _file_text(found)
            path = directory / name / f"v{version}.yaml"
            if version in local_versions or path.exists():
                ours = path.read_text(encoding="utf-8") if path.exists() else ""
                if ours != theirs:
                    plan.conflicts.append(_diff(ours, theirs, str(path), f"langfuse:{name}@v{version}"))
                continue
            plan.write.append(str(path))
            steps.append(partial(_write, path, theirs))
        local_labels = _labels(registry, name) if name in registry.names() else {}
        for label, version in sorted(remote_labels.items()):
            if local_labels.get(label) != version:
                before = f"v{local_labels[label]}" if label in local_labels else "(none)"
                plan.labels.append(f"{label}: {name} {before} -> v{version}")
                label_moves.append((label, name, version))
    if label_moves:
        labels_path = directory / LABELS_FILE
        if _locally_changed(labels_path):
            before = labels_path.read_text(encoding="utf-8") if labels_path.exists() else ""
            after = _labels_after(before, label_moves)
            plan.conflicts.append(
                f"{labels_path} has uncommitted local changes; commit or revert them first. The pull "
                "would change it like this:\n" + _diff(before, after, str(labels_path), "after pull")
            )
        else:
            steps.append(partial(_apply_labels, directory, label_moves))
    return plan, steps


def _creator(
    remote: LangfusePrompts, name: str, version: int, prompt: Any, text: str, labels: list[str]
) -> Callable[[], None]:
    def create() -> None:
        messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
        got = remote.create(
            name,
            messages,
            config={"aiapp": {"file": text, "hash": prompt.content_hash, "ref": prompt.ref}},
            labels=labels,
            commit_message=f"aiapp prompts push {prompt.ref} ({prompt.content_hash})",
        )
        if got != version:
            raise typer.BadParameter(f"Langfuse numbered {prompt.ref} as v{got}; someone pushed concurrently")

    return create


# -- helpers ---------------------------------------------------------------------------------


def _finish(plan: Plan, *, dry_run: bool, as_json: bool, verb: str) -> None:
    if as_json:
        print_json({**plan.to_json(), "dry_run": dry_run})
    else:
        for item in plan.create:
            typer.echo(f"create {item}")
        for item in plan.write:
            typer.echo(f"write {item}")
        for item in plan.labels:
            typer.echo(f"label {item}")
    if plan.conflicts:
        if not as_json:
            for conflict in plan.conflicts:
                typer.echo(conflict, err=True)
        typer.secho(
            f"{verb} refused: {len(plan.conflicts)} conflict(s); nothing was changed", err=True, fg="red"
        )
        raise typer.Exit(1)
    if dry_run:
        raise typer.Exit(0)


def _file_text(found: Any) -> str:
    """The prompt file a Langfuse version stands for (aiapp's own text, else built from messages)."""
    stored = found.config.get("aiapp", {}).get("file") if isinstance(found.config, dict) else None
    if isinstance(stored, str) and stored:
        return stored
    import re

    import yaml

    # Langfuse's {{variable}} placeholders read the same in Jinja; declare each one.
    names = sorted({v for m in found.messages for v in re.findall(r"{{\s*(\w+)\s*}}", m["content"])})
    body: dict[str, Any] = {
        "name": found.name,
        "version": found.version,
        "description": f"Pulled from Langfuse ({found.name} v{found.version})",
    }
    if names:
        body["variables"] = {v: {"type": "string"} for v in names}
    body["messages"] = found.messages
    return "# Created in Langfuse; pulled by `aiapp prompts pull --from langfuse`.\n" + yaml.safe_dump(
        body, sort_keys=False, allow_unicode=True
    )


def _diff(a: str, b: str, a_name: str, b_name: str) -> str:
    lines = difflib.unified_diff(a.splitlines(True), b.splitlines(True), a_name, b_name)
    return "".join(lines) or f"{a_name} and {b_name} differ only in metadata\n"


def _locally_changed(path: Path) -> bool:
    """Whether ``path`` has uncommitted changes (``True`` when git cannot tell)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True
    return result.returncode != 0 or bool(result.stdout.strip())


def _labels_after(text: str, moves: list[tuple[str, str, int]]) -> str:
    """``labels.yaml`` text with each ``(label, name, version)`` set (plain entries)."""
    import re

    lines = text.splitlines(True)
    for label, name, version in moves:
        start = next((i for i, line in enumerate(lines) if re.match(rf"{re.escape(label)}\s*:", line)), None)
        if start is None:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines += [f"{label}:\n", f"  - {name}@v{version}\n"]
            continue
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
            len(lines),
        )
        pattern = re.compile(rf"^(\s*-\s*){re.escape(name)}@v\d+\b")
        for i in range(start + 1, end):
            if pattern.match(lines[i]):
                lines[i] = pattern.sub(rf"\g<1>{name}@v{version}", lines[i])
                break
        else:
            lines.insert(start + 1, f"  - {name}@v{version}\n")
    return "".join(lines)


def _apply_labels(directory: Path, moves: list[tuple[str, str, int]]) -> None:
    from aiapp.prompts import LABELS_FILE, PromptRegistry

    path = directory / LABELS_FILE
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    _write(path, _labels_after(before, moves))
    problems = [p for p in PromptRegistry(directory).problems if p.path.endswith(LABELS_FILE)]
    if problems:
        _write(path, before)
        raise problems[0].error()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _labels(registry: PromptRegistry, name: str) -> dict[str, int]:
    """A prompt's labels, less ``latest`` (aiapp and Langfuse each derive it: the newest version)."""
    return {label: v for label, v in registry.labels(name).items() if label != "latest"}


def _selected(names: list[str], only: list[str] | None) -> list[str]:
    if not only:
        return names
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise typer.BadParameter(f"no local prompt named {', '.join(unknown)}", param_hint="--name")
    return [n for n in names if n in only]


def _backend(name: str) -> None:
    if name != "langfuse":
        raise typer.BadParameter(f"unknown backend {name!r}: only 'langfuse' is supported")


def _registry(directory: Path | None, config: str | None) -> PromptRegistry:
    from aiapp.config import load_settings
    from aiapp.prompts import PromptRegistry

    return PromptRegistry(directory if directory is not None else load_settings(config).prompts.dir)


def _remote() -> LangfusePrompts:
    from aiapp.tracing._langfuse import LangfusePrompts

    return LangfusePrompts.from_env()
