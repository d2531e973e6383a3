"""The prompt registry: every ``prompts/<name>/v<N>.yaml`` plus ``prompts/labels.yaml``.

``labels.yaml`` maps deploy labels to versions, one list of ``name@vN`` references per label::

    production: [support_answer@v2]
    staging: [support_answer@v2]
    baseline: [support_answer@v1]

A label may also split traffic between versions, mark a canary and name a shadow (see
:mod:`aiapp.prompts._labels`); ``get(name, label=..., key=user_id)`` then picks the caller's arm,
sticky by the key.

References name a version (``support_answer@v2``) or a label (``support_answer@production``).
``latest`` is a built-in label for the highest version. A bare name means its ``production`` label
when it has one, else ``latest``.

Loading never stops at the first bad file: each problem is kept (file, line, message), a broken
version refuses to load with its problem, and :meth:`PromptRegistry.check` lists them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from aiapp._yaml import LocatedYaml, read_yaml_file
from aiapp.errors import PromptError
from aiapp.prompts._labels import LabelEntry, key_hash, parse_labels
from aiapp.prompts._model import NAME_PATTERN, Prompt, RenderLimits
from aiapp.prompts._state import RolloutState
from aiapp.tracing import current_span

if TYPE_CHECKING:
    from aiapp.config import Settings

__all__ = ["LABELS_FILE", "Assignment", "Problem", "PromptRegistry", "Ref", "parse_ref"]

LABELS_FILE = "labels.yaml"
"""The labels file, directly under the prompts directory."""

LATEST = "latest"
DEFAULT_LABEL = "production"

_FILE_RE = re.compile(r"v([1-9][0-9]*)\.ya?ml")
_LABEL_RE = re.compile(r"[a-z][a-z0-9_-]*")
_VERSION_RE = re.compile(r"v([1-9][0-9]*)")


@dataclass(frozen=True)
class Problem:
    """One problem found in the prompts directory: a file, a line when known, and what is wrong."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"

    @classmethod
    def from_error(cls, exc: PromptError, *, path: str) -> Problem:
        """A problem from a :class:`PromptError` (its location prefix moved into fields)."""
        where = exc.path or path
        prefix = f"{where}:{exc.line}: " if exc.line is not None else f"{where}: "
        return cls(where, exc.line, str(exc).removeprefix(prefix))

    def error(self) -> PromptError:
        """This problem as a :class:`PromptError` to raise."""
        return PromptError(self.message, path=self.path, line=self.line)


@dataclass(frozen=True)
class Ref:
    """A parsed prompt reference: a name and at most one of a version or a label."""

    name: str
    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@v{self.version}"
        return f"{self.name}@{self.label}" if self.label else self.name


@dataclass(frozen=True)
class Assignment:
    """The version a caller was assigned under a label, and how (for the trace).

    Attributes:
        prompt: The prompt version to serve.
        entry: The label's entry when the label splits traffic (``None`` for a plain version).
        key: A hash of the caller key (never the key itself), or ``None`` without one.
    """

    prompt: Prompt
    entry: LabelEntry | None = None
    key: str | None = None

    @property
    def arm(self) -> str:
        """``vN``: the arm served."""
        return f"v{self.prompt.version}"

    @property
    def is_canary(self) -> bool:
        """Whether the arm served is the label's canary."""
        return self.entry is not None and self.entry.canary_version == self.prompt.version

    def attributes(self) -> dict[str, object]:
        """Trace attributes: ``{"rollout": {experiment, arm, role, canary, key}}`` (empty without a split)."""
        if self.entry is None:
            return {}
        return {
            "rollout": {
                "experiment": self.entry.experiment,
                "arm": self.arm,
                "role": "canary" if self.is_canary else "primary",
                "key": self.key,
            }
        }


def parse_ref(text: str) -> Ref:
    """Parse ``name``, ``name@vN`` or ``name@label``.

    Raises:
        PromptError: the reference is malformed.
    """
    name, at, tag = text.strip().partition("@")
    if not re.fullmatch(NAME_PATTERN, name) or (at and not tag):
        raise PromptError(f"bad prompt reference {text!r}: write name, name@v2 or name@production")
    if not at:
        return Ref(name)
    version = _VERSION_RE.fullmatch(tag)
    if version:
        return Ref(name, version=int(version.group(1)))
    if tag.isdigit():
        raise PromptError(f"bad prompt reference {text!r}: versions are written {name}@v{tag}")
    if not _LABEL_RE.fullmatch(tag):
        raise PromptError(f"bad prompt reference {text!r}: labels use a-z, 0-9, '_' and '-'")
    return Ref(name, label=tag)


class PromptRegistry:
    """Loads and validates a prompts directory; resolves references to :class:`Prompt` versions.

    Args:
        directory: The prompts directory (``prompts/`` by default in configuration).
        limits: What rendering one template may cost (default :class:`RenderLimits`: 1 MB of
            output, 100,000 loop iterations, 2 s); ``check`` reports a template over them.

    Raises:
        PromptError: the directory does not exist.

    Example:
        >>> registry = PromptRegistry("prompts")
        >>> prompt = registry.get("support_answer", label="production")
        >>> registry.get("support_answer@v1").ref
        'support_answer@v1'
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        limits: RenderLimits | None = None,
        state: RolloutState | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.limits = limits
        self.state = state if state is not None else RolloutState(None)
        if not self.directory.is_dir():
            raise PromptError(
                "prompts directory does not exist (set prompts.dir in configs/aiapp.yaml)",
                path=str(self.directory),
            )
        self._prompts: dict[str, dict[int, Prompt]] = {}
        self._broken: dict[str, dict[int, Problem]] = {}
        self._labels: dict[str, dict[str, int]] = {}  # label -> name -> version
        self._entries: dict[str, dict[str, LabelEntry]] = {}  # label -> name -> entry (splits)
        self._problems: list[Problem] = []
        self._load()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PromptRegistry:
        """The registry for ``settings.prompts.dir`` (settings loaded from configuration when ``None``),
        with the automatic rollbacks persisted under ``$AIAPP_HOME/rollout/state.json``."""
        if settings is None:
            from aiapp.config import load_settings

            settings = load_settings()
        return cls(settings.prompts.dir, state=RolloutState(settings.home / "rollout" / "state.json"))

    # -- lookups -----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every prompt name with at least one version file, sorted."""
        return sorted(set(self._prompts) | set(self._broken))

    def versions(self, name: str) -> list[int]:
        """The version numbers of ``name`` that have a file (loaded or broken), ascending."""
        return sorted(set(self._prompts.get(name, {})) | set(self._broken.get(name, {})))

    def labels(self, name: str) -> dict[str, int]:
        """``label -> version`` for ``name`` (``latest`` included)."""
        out = {label: by_name[name] for label, by_name in sorted(self._labels.items()) if name in by_name}
        versions = self.versions(name)
        if versions:
            out[LATEST] = versions[-1]
        return out

    def all_labels(self) -> dict[str, dict[str, int]]:
        """``label -> {name: version}`` as declared in ``labels.yaml``."""
        return {label: dict(by_name) for label, by_name in sorted(self._labels.items())}

    def __iter__(self) -> Iterator[Prompt]:
        """Every loaded version, by name then version."""
        for name in sorted(self._prompts):
            for version in sorted(self._prompts[name]):
                yield self._prompts[name][version]

    def entry(self, name: str, label: str) -> LabelEntry | None:
        """The label's entry for ``name`` (its arms, canary and shadow), or ``None``."""
        return self._entries.get(label, {}).get(name)

    def entries(self) -> list[LabelEntry]:
        """Every label entry, by label then name."""
        return [e for label in sorted(self._entries) for _, e in sorted(self._entries[label].items())]

    def overrides(self, entry: LabelEntry) -> dict[int, float]:
        """Rollback overrides in force for an entry (see :class:`~aiapp.prompts.RolloutState`)."""
        return self.state.overrides(entry.experiment, entry.signature)

    def roll_back(self, entry: LabelEntry, version: int, reason: str) -> None:
        """Drop ``version``'s weight to 0 in ``entry``'s split, persisted in :attr:`state`."""
        self.state.set_weight(entry.experiment, entry.signature, version, 0.0, reason)

    def assign(self, ref: str, *, label: str | None = None, key: str | None = None) -> Assignment:
        """Resolve a reference for one caller: a split label picks the caller's arm by ``key``.

        Without a key a split serves its heaviest arm. The assignment is sticky: the same key
        always gets the same arm while the weights stay as they are.

        Raises:
            PromptError: as :meth:`get`.
        """
        parsed = parse_ref(ref)
        tag = parsed.label if parsed.label is not None else label
        if parsed.version is None and tag != LATEST:
            name = parsed.name
            tag = tag or DEFAULT_LABEL
            entry = self._entries.get(tag, {}).get(name)
            if entry is not None and entry.is_split:
                overrides = self.overrides(entry)
                chosen = entry.choose(key, overrides) if key is not None else entry.primary(overrides)
                found = self._prompts.get(name, {}).get(chosen)
                prompt = found if found is not None else self.get(name, version=chosen)
                return Assignment(prompt, entry, key_hash(key) if key is not None else None)
        return Assignment(self.get(ref, label=label))

    def get(
        self, ref: str, *, version: int | None = None, label: str | None = None, key: str | None = None
    ) -> Prompt:
        """Resolve a reference to a prompt version.

        Args:
            ref: ``name``, ``name@vN`` or ``name@label``.
            version: A version number (instead of ``@vN``).
            label: A label (instead of ``@label``); ``latest`` is the highest version.
            key: The caller's key (user or session id) for a label that splits traffic: picks the
                caller's arm (sticky) and records it on the span open in this context, if any.

        Raises:
            PromptError: unknown name, version or label, or a version whose file has a problem
                (naming that file and line).
        """
        if key is not None and version is None:
            assignment = self.assign(ref, label=label, key=key)
            attributes = assignment.attributes()
            span = current_span()
            if attributes and span is not None and span.record is not None:
                span.record.attributes.update(attributes)
            return assignment.prompt
        parsed = parse_ref(ref)
        if sum(x is not None for x in (parsed.version, parsed.label, version, label)) > 1:
            raise PromptError(f"prompt reference {ref!r}: give one of a version or a label, not both")
        name = parsed.name
        if name not in self._prompts and name not in self._broken:
            known = ", ".join(self.names()) or "none"
            raise PromptError(f"unknown prompt {name!r} (known: {known})", path=str(self.directory))
        chosen = parsed.version if parsed.version is not None else version
        tag = parsed.label if parsed.label is not None else label
        if chosen is None:
            labels = self.labels(name)
            tag = tag or (DEFAULT_LABEL if DEFAULT_LABEL in labels else LATEST)
            if tag not in labels:
                names = ", ".join(labels)
                raise PromptError(
                    f"prompt {name!r} has no label {tag!r} (labels: {names})",
                    path=str(self.directory / LABELS_FILE),
                )
            chosen = labels[tag]
            entry = self._entries.get(tag, {}).get(name)
            if entry is not None and entry.is_split:
                chosen = entry.primary(self.overrides(entry))
        broken = self._broken.get(name, {}).get(chosen)
        if broken is not None:
            raise broken.error()
        prompt = self._prompts.get(name, {}).get(chosen)
        if prompt is None:
            have = ", ".join(f"v{v}" for v in self.versions(name))
            raise PromptError(
                f"prompt {name!r} has no version v{chosen} (versions: {have})",
                path=str(self.directory / name),
            )
        return prompt

    # -- checking ----------------------------------------------------------------------------------

    @property
    def problems(self) -> list[Problem]:
        """Problems found while loading (files, schema, templates, labels)."""
        return list(self._problems)

    def check(self, *, routes: Iterable[str] | None = None) -> list[Problem]:
        """Every problem: those found while loading, plus rendering each version with its examples
        and sample values in the sandbox, and checking example outputs against the output schema.

        Args:
            routes: The configured route names; when given, a label's shadow naming another route
                (not ``provider/model``) is a problem too.

        Returns:
            Problems sorted by file and line; empty when everything is valid.
        """
        problems = list(self._problems)
        for prompt in self:
            problems.extend(_render_problems(prompt))
        if routes is not None:
            known = sorted(set(routes))
            for entry in self.entries():
                route = entry.shadow.route if entry.shadow is not None else None
                if route is not None and route not in known and "/" not in route:
                    message = (
                        f"{entry.label}.{entry.name}.shadow names route {route!r}, which is not "
                        f"configured (known: {', '.join(known)})"
                    )
                    problems.append(Problem(entry.path, entry.line, message))
        return sorted(problems, key=lambda p: (p.path, p.line or 0, p.message))

    # -- loading -----------------------------------------------------------------------------------

    def _load(self) -> None:
        for entry in sorted(self.directory.iterdir()):
            if entry.is_dir() and not entry.name.startswith((".", "_")):
                self._load_dir(entry)
            elif entry.suffix in (".yaml", ".yml") and entry.name != LABELS_FILE:
                self._problem(
                    entry, None, "prompt files belong in <name>/v<N>.yaml; move or delete this file"
                )
        labels = self.directory / LABELS_FILE
        if labels.is_file():
            self._load_labels(labels)

    def _load_dir(self, directory: Path) -> None:
        for file in sorted(directory.iterdir()):
            if file.suffix not in (".yaml", ".yml"):
                continue
            match = _FILE_RE.fullmatch(file.name)
            if match is None:
                self._problem(file, None, "prompt version files are named v<N>.yaml (v1.yaml, v2.yaml, ...)")
                continue
            version = int(match.group(1))
            if version in self._prompts.get(directory.name, {}) or version in self._broken.get(
                directory.name, {}
            ):
                self._problem(file, None, f"version v{version} is defined twice (.yaml and .yml)")
                continue
            problems = self._load_file(file, directory.name, version)
            if problems:
                self._problems.extend(problems)
                self._broken.setdefault(directory.name, {})[version] = problems[0]

    def _load_file(self, file: Path, name: str, version: int) -> list[Problem]:
        """Load one version file into the registry; return its problems (empty when it loaded)."""
        path = str(file)
        try:
            located = read_yaml_file(file, error=PromptError)
        except PromptError as exc:
            return [Problem.from_error(exc, path=path)]
        if not isinstance(located.data, dict):
            return [Problem(path, 1, "a prompt file is a mapping of keys (name, version, messages, ...)")]
        try:
            prompt = Prompt.model_validate(located.data)
        except ValidationError as exc:
            return _validation_problems(exc, located)
        prompt._attach(
            path=path, lines=located.lines, source=file.read_text(encoding="utf-8"), limits=self.limits
        )
        problems = []
        if prompt.name != name:
            problems.append(
                Problem(
                    path, prompt.line_of("name"), f"name {prompt.name!r} must match its directory {name!r}"
                )
            )
        if prompt.version != version:
            problems.append(
                Problem(
                    path,
                    prompt.line_of("version"),
                    f"version {prompt.version} must match the file name v{version}.yaml",
                )
            )
        try:
            templates = prompt.templates()
        except PromptError as exc:
            return [*problems, Problem.from_error(exc, path=path)]
        declared = set(prompt.variables)
        for template in templates:
            for issue in template.problems(declared):
                problems.append(Problem(path, issue.line, issue.message))
        if not problems:
            self._prompts.setdefault(name, {})[version] = prompt
        return problems

    def _load_labels(self, file: Path) -> None:
        path = str(file)
        try:
            located = read_yaml_file(file, error=PromptError)
        except PromptError as exc:
            self._problems.append(Problem.from_error(exc, path=path))
            return
        entries, problems = parse_labels(located, self.versions, self.names())
        for line, message in problems:
            self._problem(file, line, message)
        self._entries = entries
        for label, by_name in entries.items():
            self._labels[label] = {name: entry.primary() for name, entry in by_name.items()}

    def _problem(self, file: Path, line: int | None, message: str) -> None:
        self._problems.append(Problem(str(file), line, message))


def _validation_problems(exc: ValidationError, located: LocatedYaml) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        field = ".".join(str(p) for p in loc)
        if error["type"] == "extra_forbidden":
            parent = ".".join(str(p) for p in loc[:-1])
            message = f"unknown key {loc[-1]!r}" + (f" under {parent}" if parent else "")
        elif error["type"] == "missing":
            message = f"missing required key {field!r}"
        else:
            text = str(error["msg"]).removeprefix("Value error, ")
            message = f"{field}: {text}" if field else text
        problems.append(Problem(located.path, located.line_of(loc) or 1, message))
    return problems


def _render_problems(prompt: Prompt) -> list[Problem]:
    """Render ``prompt`` with sample values and with each example; check examples' outputs."""
    path = prompt.path or f"<prompt {prompt.ref}>"
    problems: list[Problem] = []
    samples = {name: spec.sample_value() for name, spec in prompt.variables.items()}
    if all(value is not None or not prompt.variables[name].is_required for name, value in samples.items()):
        try:
            prompt.render({k: v for k, v in samples.items() if v is not None})
        except PromptError as exc:
            problems.append(Problem.from_error(exc, path=path))
    for i, example in enumerate(prompt.examples):
        line = prompt.line_of("examples", i)
        try:
            prompt.bind(example.vars, where=f"examples[{i}]")
            for template in prompt.templates():
                template.render(prompt.bind(example.vars))
        except PromptError as exc:
            problem = Problem.from_error(exc, path=path)
            problems.append(Problem(path, problem.line or line, problem.message))
            continue
        if prompt.output.type == "json":
            problems.extend(_example_output_problems(prompt, i, example.output, path))
    return problems


def _example_output_problems(prompt: Prompt, index: int, output: Any, path: str) -> list[Problem]:
    import json

    from aiapp.prompts._schema import schema_errors

    line = prompt.line_of("examples", index, "output")
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except json.JSONDecodeError as exc:
            return [Problem(path, line, f"examples[{index}].output is not JSON: {exc.msg}")]
    if prompt.output.json_schema is None:
        return []
    return [
        Problem(path, line, f"examples[{index}].output does not match the output schema: {error}")
        for error in schema_errors(output, prompt.output.json_schema)
    ]
