"""YAML loading that remembers where every key came from, so errors can name the line.

PyYAML's ``safe_load`` forgets positions; we compose the node tree once and keep a map from
dotted field paths (``routes.openai.deployments.0.model``) to 1-based line numbers. Prompt files,
eval suites and the config share this helper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aiapp.errors import ConfigError, PromptError

YamlError = type[ConfigError] | type[PromptError]
"""The error class raised for a bad file: :class:`ConfigError` for config, :class:`PromptError` for prompts."""


class LocatedYaml:
    """A parsed YAML document plus the line of each field path."""

    def __init__(self, data: Any, lines: dict[str, int], path: str) -> None:
        self.data = data
        self.lines = lines
        self.path = path

    def line_of(self, loc: tuple[str | int, ...] | list[str | int]) -> int | None:
        """The line of the deepest known prefix of ``loc`` (a pydantic error location)."""
        parts = [str(p) for p in loc]
        while parts:
            line = self.lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return None


def load_yaml(text: str, *, path: str, error: YamlError = ConfigError) -> LocatedYaml:
    """Parse YAML text; raise ``error`` naming the file and line on bad syntax."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(f"invalid YAML: {problem}", path=path, line=line) from exc
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", path=path) from exc
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines)
    return LocatedYaml(data, lines, path)


def read_yaml_file(path: Path, *, error: YamlError = ConfigError) -> LocatedYaml:
    """Read and parse a YAML file; unreadable or binary files raise ``error`` naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read file: {exc.strerror}", path=str(path)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte {exc.start})", path=str(path)) from exc
    return load_yaml(text, path=str(path), error=error)


def _walk(node: yaml.Node, prefix: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[key] = key_node.start_mark.line + 1
            _walk(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}.{i}" if prefix else str(i)
            lines[key] = item.start_mark.line + 1
            _walk(item, key, lines)
