"""Promote and roll back with a one-line change to ``labels.yaml`` (``aiapp prompts promote|rollback``).

The file is edited as text, line by line, so comments, order and layout stay as they were; the
result is parsed and checked like any labels file before it replaces the old one (atomically: a
temporary file renamed over it). What changes:

- a plain entry (``- support_answer@v2`` or ``support_answer: v2``): its version;
- a split (``support_answer: {v2: 90, v3: 10}``): promoting an arm gives it all the weight (the
  others 0); rolling back an arm (the canary by default) gives its weight to the control.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiapp._yaml import load_yaml
from aiapp.errors import PromptError
from aiapp.prompts._labels import LabelEntry, parse_labels
from aiapp.prompts._registry import LABELS_FILE, PromptRegistry, parse_ref

__all__ = ["LabelChange", "promote", "rollback"]


@dataclass(frozen=True)
class LabelChange:
    """What an edit changed in ``labels.yaml``.

    Attributes:
        path: The file.
        lines: ``(line number, before, after)`` for each changed line.
        summary: One sentence for people (``production: support_answer v2 -> v3``).
    """

    path: str
    lines: tuple[tuple[int, str, str], ...]
    summary: str


def promote(directory: Path | str, ref: str, *, label: str = "production") -> LabelChange:
    """Serve ``name@vN`` under ``label``: replace a plain version, or give a split's arm all the weight.

    Raises:
        PromptError: the version, label or entry does not exist, or the line cannot be edited.
    """
    registry = PromptRegistry(directory)
    parsed = parse_ref(ref)
    if parsed.version is None:
        raise PromptError(f"promote needs a version: {parsed.name}@v3, not {ref!r}")
    registry.get(parsed.name, version=parsed.version)  # the version exists and loads
    entry = _entry(registry, parsed.name, label)
    if len(entry.arms) == 1 and entry.canary is None:
        return _set_version(registry, entry, parsed.version)
    if parsed.version not in {a.version for a in entry.arms}:
        arms = ", ".join(a.tag for a in entry.arms)
        raise PromptError(
            f"{label}.{entry.name} splits traffic between {arms}; v{parsed.version} is not one of them",
            path=entry.path,
            line=entry.line,
        )
    full = 100.0 if entry.total > 1 else 1.0
    weights = {a.version: (full if a.version == parsed.version else 0.0) for a in entry.arms}
    return _set_weights(registry, entry, weights, f"promoted v{parsed.version}")


def rollback(
    directory: Path | str,
    name: str,
    *,
    label: str = "production",
    to: int | None = None,
    arm: int | None = None,
) -> LabelChange:
    """Undo a rollout under ``label``: a split's arm (the canary by default) to weight 0, or a plain
    entry back to version ``to`` (default: the highest version below the current one).

    Raises:
        PromptError: nothing to roll back to, or the line cannot be edited.
    """
    registry = PromptRegistry(directory)
    entry = _entry(registry, name, label)
    if len(entry.arms) == 1 and entry.canary is None:
        current = entry.arms[0].version
        if to is None:
            lower = [v for v in registry.versions(name) if v < current]
            if not lower:
                raise PromptError(
                    f"{label}.{name} serves v{current}; there is no earlier version to roll back to",
                    path=entry.path,
                    line=entry.line,
                )
            to = lower[-1]
        registry.get(name, version=to)
        return _set_version(registry, entry, to)
    if to is not None and arm is None:
        return promote(directory, f"{name}@v{to}", label=label)
    target = arm if arm is not None else entry.canary_version
    if target is None:
        raise PromptError(
            f"{label}.{name} has no canary: say which arm to roll back (--arm vN)",
            path=entry.path,
            line=entry.line,
        )
    weights = {a.version: a.weight for a in entry.arms}
    if target not in weights:
        raise PromptError(f"{label}.{name} has no arm v{target}", path=entry.path, line=entry.line)
    control = entry.control_version if target != entry.control_version else None
    if control is None:
        others = [v for v in weights if v != target]
        if not others:
            raise PromptError(f"{label}.{name}: v{target} is its only arm", path=entry.path, line=entry.line)
        control = max(others, key=lambda v: weights[v])
    weights[control] += weights[target]
    weights[target] = 0.0
    return _set_weights(registry, entry, weights, f"rolled back v{target} (its share to v{control})")


def _entry(registry: PromptRegistry, name: str, label: str) -> LabelEntry:
    problems = [p for p in registry.problems if p.path.endswith(LABELS_FILE)]
    if problems:
        raise problems[0].error()
    entry = registry.entry(name, label)
    if entry is None:
        raise PromptError(
            f"label {label!r} has no entry for {name!r}; add one to {LABELS_FILE} first",
            path=str(registry.directory / LABELS_FILE),
        )
    return entry


def _set_version(registry: PromptRegistry, entry: LabelEntry, version: int) -> LabelChange:
    current = entry.arms[0].version
    if entry.line is None:
        raise PromptError(f"cannot find {entry.label}.{entry.name} in the file", path=entry.path)
    name = re.escape(entry.name)
    patterns = [
        (re.compile(rf"(?<![\w-]){name}@v{current}\b"), f"{entry.name}@v{version}"),
        (re.compile(rf"((?<![\w-]){name}\s*:\s*)(?:{name}@)?v{current}\b"), rf"\g<1>v{version}"),
    ]
    summary = f"{entry.label}: {entry.name} v{current} -> v{version}"
    return _edit(registry, entry, {entry.line: [patterns]}, summary)


def _set_weights(
    registry: PromptRegistry, entry: LabelEntry, weights: dict[int, float], what: str
) -> LabelChange:
    edits: dict[int, list[list[tuple[re.Pattern[str], str]]]] = {}
    for arm in entry.arms:
        if arm.line is None:
            raise PromptError(
                f"cannot find {entry.label}.{entry.name} v{arm.version} in the file", path=entry.path
            )
        value = weights[arm.version]
        text = str(int(value)) if value == int(value) else f"{value:g}"
        pattern = re.compile(rf"((?<![\w@-])v{arm.version}\s*:\s*)[-+]?[0-9][0-9.eE+-]*")
        edits.setdefault(arm.line, []).append([(pattern, rf"\g<1>{text}")])
    shown = ", ".join(f"v{v}: {w:g}" for v, w in sorted(weights.items()))
    return _edit(registry, entry, edits, f"{entry.label}: {entry.name} {what} ({shown})")


def _edit(
    registry: PromptRegistry,
    entry: LabelEntry,
    edits: dict[int, list[list[tuple[re.Pattern[str], str]]]],
    summary: str,
) -> LabelChange:
    path = Path(entry.path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    changed: list[tuple[int, str, str]] = []
    for number, patterns in sorted(edits.items()):
        before = lines[number - 1]
        code, hash_, comment = before.partition(" #")
        after = code
        for alternatives in patterns:  # each edit: the first alternative that matches
            count = 0
            for pattern, replacement in alternatives:
                after, count = pattern.subn(replacement, after, count=1)
                if count:
                    break
            if count == 0:
                raise PromptError(
                    f"cannot edit this line for {entry.label}.{entry.name} (write it as "
                    f"{entry.name}@vN, {entry.name}: vN or {entry.name}: {{v2: 90, v3: 10}})",
                    path=str(path),
                    line=number,
                )
        after = after + hash_ + comment
        if after != before:
            lines[number - 1] = after
            changed.append((number, before.rstrip("\n"), after.rstrip("\n")))
    new_text = "".join(lines)
    located = load_yaml(new_text, path=str(path), error=PromptError)
    _, problems = parse_labels(located, registry.versions, registry.names())
    if problems:
        line, message = problems[0]
        raise PromptError(f"the edit would break {LABELS_FILE}: {message}", path=str(path), line=line)
    if changed:
        _write_atomic(path, new_text)
    return LabelChange(str(path), tuple(changed), summary)


def _write_atomic(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
