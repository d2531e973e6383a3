"""Suite files: ``evals/<suite>.yaml`` = dataset × target × scorers (+ repeats and a gate).

::

    name: ollama_faq
    dataset: {path: data/ollama_faq.jsonl, fields: {input: question, expected: answer}}
    target: {kind: rag, prompt: support_answer@production, route: local, k: 5}
    scorers:
      - hit_at_k: {k: 5}
      - token_f1
      - judge_rubric: {criteria: "Answers the question using only the docs"}
    repeats: 1
    perturb: [typos, case, injected_instruction]   # robustness: each case also runs perturbed
    gate:
      metrics:
        hit_at_k: {min: 0.5, max_drop: 0.05}
        token_f1: {max_drop: 0.05}

Every mistake is a :class:`~aiapp.errors.ConfigError` naming the file, line and field.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aiapp._yaml import read_yaml_file
from aiapp.errors import ConfigError
from aiapp.evals._dataset import DatasetSpec

TargetKind = Literal["rag", "prompt", "callable", "agent"]


class TargetSpec(BaseModel):
    """What is evaluated.

    * ``rag``: the RAG app over an index (``index``, ``k``) with ``prompt`` on ``route``;
    * ``prompt``: a prompt ref rendered with the case's input as variables, sent to ``route``;
    * ``callable``: ``module:function`` taking the case input (and optionally the case), returning
      text, a dict, or an :class:`~aiapp.evals.Output`;
    * ``agent``: an :class:`aiapp.agents.Agent` with ``tools`` on ``route``.
    """

    model_config = ConfigDict(extra="forbid")

    kind: TargetKind | None = None
    prompt: str | None = None
    route: str | None = None
    index: str | None = None
    k: int = Field(default=5, gt=0)
    callable: str | None = None
    tools: list[str] | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def resolved_kind(self) -> TargetKind:
        """The kind, inferred when not given."""
        if self.kind is not None:
            return self.kind
        if self.callable:
            return "callable"
        if self.tools is not None:
            return "agent"
        if self.index is not None:
            return "rag"
        return "prompt" if self.prompt else "rag"

    def describe(self) -> str:
        """A one-line description for reports."""
        kind = self.resolved_kind
        if kind == "callable":
            return f"callable {self.callable}"
        parts: list[str] = [kind]
        if self.prompt:
            parts.append(self.prompt)
        parts.append(f"route={self.route or 'default'}")
        if kind == "rag":
            parts.append(f"index={self.index or 'default'} k={self.k}")
        return " ".join(parts)


class MetricGate(BaseModel):
    """A gated metric: an absolute floor and/or the largest allowed drop from the baseline."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max_drop: float | None = Field(default=None, ge=0)


class GateSpec(BaseModel):
    """How a suite gates CI.

    Attributes:
        metrics: Metric name → bar.
        baseline: Baseline file (default ``evals/baselines/<suite>.json`` beside the suite).
        on_inconclusive: What an inconclusive verdict does to the exit code: ``fail`` (exit 3,
            the default: an unproven change does not merge silently) or ``pass`` (exit 0, warned).
        confidence: Interval level.
    """

    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, MetricGate] = Field(default_factory=dict)
    baseline: str | None = None
    on_inconclusive: Literal["fail", "pass"] = "fail"
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


PerturbKind = Literal[
    "typos",
    "case",
    "whitespace",
    "reorder_context",
    "distractor_context",
    "paraphrase",
    "injected_instruction",
]
#: Perturbations that change the retrieved context rather than the question.
CONTEXT_KINDS: frozenset[str] = frozenset({"reorder_context", "distractor_context"})


class PerturbSpec(BaseModel):
    """Robustness: run every case in its original form and once per perturbation.

    Written as a list of kinds (``perturb: [typos, case]``) or a mapping with options.

    Attributes:
        kinds: The perturbations (see :data:`PerturbKind`).
        seed: Seed of the deterministic perturbations (each case's draw also depends on its id).
        route: Route that writes paraphrases (default: the target's route, then the default route).
        typo_rate: Share of words (4+ letters) that get a typo; at least one per question.
    """

    model_config = ConfigDict(extra="forbid")

    kinds: list[PerturbKind] = Field(min_length=1)
    seed: int = 0
    route: str | None = None
    typo_rate: float = Field(default=0.1, gt=0, le=1)

    @field_validator("kinds")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each perturbation may appear once")
        return value


class ScorerSpec(BaseModel):
    """One scorer entry: a registry name and its parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Suite(BaseModel):
    """A parsed suite file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    dataset: DatasetSpec
    target: TargetSpec = Field(default_factory=TargetSpec)
    scorers: list[ScorerSpec] = Field(min_length=1)
    repeats: int = Field(default=1, ge=1, le=100)
    concurrency: int = Field(default=8, ge=1, le=512)
    gate: GateSpec = Field(default_factory=GateSpec)
    perturb: PerturbSpec | None = None
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("scorers", mode="before")
    @classmethod
    def _scorer_entries(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out: list[Any] = []
        for entry in value:
            if isinstance(entry, str):
                out.append({"name": entry})
            elif isinstance(entry, dict) and len(entry) == 1 and "name" not in entry:
                ((name, params),) = entry.items()
                out.append({"name": name, "params": params or {}})
            else:
                out.append(entry)
        return out

    @field_validator("perturb", mode="before")
    @classmethod
    def _perturb_list(cls, value: Any) -> Any:
        return {"kinds": value} if isinstance(value, list) else value

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the suite resolve against."""
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def baseline_path(self) -> Path:
        """Where this suite's baseline lives."""
        if self.gate.baseline:
            path = Path(self.gate.baseline)
            return path if path.is_absolute() else self.base_dir / path
        return self.base_dir / "baselines" / f"{self.name}.json"

    def content_hash(self) -> str:
        """A hash of the suite's definition (part of the run id, so edits start a fresh run)."""
        data = self.model_dump_json(exclude={"gate", "description", "concurrency"})
        return hashlib.sha256(data.encode()).hexdigest()[:12]


def load_suite(path: Path | str) -> Suite:
    """Parse and validate one suite file."""
    path = Path(path)
    located = read_yaml_file(path)
    data = located.data
    if not isinstance(data, dict):
        raise ConfigError("a suite file must be a mapping", path=str(path), line=1)
    data = dict(data)
    data.setdefault("name", path.stem)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        message = f"unknown key {loc[-1]!r}" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(
            message, path=str(path), line=located.line_of(loc), field=".".join(str(p) for p in loc)
        ) from exc
    suite.path = path.resolve()
    return suite


def discover_suites(root: Path | str = "evals") -> list[Path]:
    """Suite files directly under ``root`` (``*.yaml``/``*.yml``), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
