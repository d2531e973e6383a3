"""Deploy labels in ``prompts/labels.yaml``: plain versions, weighted splits, canaries and shadows.

Each label maps prompt names to what serves them. The list form names one version per prompt; the
mapping form may also split traffic, mark a canary and name a shadow. Both can be mixed, and a list
item may be a one-key mapping::

    production:
      - ticket_triage@v1                       # list form: one version
      - support_answer: {v2: 90, v3: 10}       # a split, as a list item
    staging:
      support_answer:                          # mapping form
        split: {v2: 50, v3: 50}
        canary: {arm: v3, error_rate: 0.05, min_samples: 200}
        shadow: {prompt: support_answer@v4, route: openai, sample: 0.2, max_in_flight: 4}
      math_answer: v1

Split weights are percentages that sum to 100 (or fractions that sum to 1). Which arm a caller gets
is sticky: a hash of ``label/name`` and the caller's key (user id, session id) picks a point in
[0, 1), and the arms own consecutive slices of it in version order — the same key always lands in
the same arm, and moving weight from one arm to the next only moves the keys on the boundary.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from aiapp._rollout_config import CanarySpec, ShadowSpec, bucket, key_hash
from aiapp._yaml import LocatedYaml
from aiapp.prompts._model import NAME_PATTERN

__all__ = ["Arm", "LabelEntry", "bucket", "key_hash", "parse_labels"]

_VERSION_RE = re.compile(r"v([1-9][0-9]*)")
_ENTRY_KEYS = frozenset({"split", "canary", "shadow"})
_TOLERANCE = 1e-6

LineProblem = tuple[int | None, str]
"""A problem found in labels.yaml: its line (when known) and message."""


@dataclass(frozen=True)
class Arm:
    """One arm of a split: a version and its share of traffic.

    Attributes:
        version: The prompt version.
        weight: Its share as written (a percentage or a fraction).
        line: The line of ``labels.yaml`` holding it.
    """

    version: int
    weight: float
    line: int | None = None

    @property
    def tag(self) -> str:
        """``vN``."""
        return f"v{self.version}"


@dataclass(frozen=True)
class LabelEntry:
    """What a label serves for one prompt: one version, or a split with its canary and shadow.

    Attributes:
        label: The label (``production``).
        name: The prompt name.
        arms: The versions and their weights, in version order (one arm, weight 100, for a plain ref).
        canary: The canary's guard rails, if an arm is a canary.
        shadow: What runs in the shadow of this prompt, if anything.
        line: The line of the entry in ``labels.yaml``.
        path: ``labels.yaml``'s path.
    """

    label: str
    name: str
    arms: tuple[Arm, ...]
    canary: CanarySpec | None = None
    shadow: ShadowSpec | None = None
    line: int | None = None
    path: str = ""
    total: float = field(default=100.0, repr=False)
    signature: str = field(init=False, repr=False, compare=False)
    _shares: tuple[tuple[int, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once: assignment runs on every call of a split label.
        object.__setattr__(self, "signature", ",".join(f"v{a.version}:{a.weight:g}" for a in self.arms))
        object.__setattr__(self, "_shares", tuple((a.version, a.weight / self.total) for a in self.arms))

    @property
    def experiment(self) -> str:
        """``label/name``: the key under which assignment, traces and rollbacks are kept."""
        return f"{self.label}/{self.name}"

    @property
    def is_split(self) -> bool:
        """More than one arm, or a canary or shadow configured."""
        return len(self.arms) > 1 or self.canary is not None or self.shadow is not None

    @property
    def canary_version(self) -> int | None:
        """The canary's version number."""
        return int(self.canary.arm[1:]) if self.canary is not None else None

    @property
    def control_version(self) -> int:
        """The control arm: ``canary.control``, else the heaviest arm that is not the canary."""
        if self.canary is not None and self.canary.control is not None:
            return int(self.canary.control[1:])
        canary = self.canary_version
        others = [a for a in self.arms if a.version != canary] or list(self.arms)
        return max(others, key=lambda a: (a.weight, -a.version)).version

    def weights(self, overrides: Mapping[int, float] | None = None) -> list[tuple[int, float]]:
        """``(version, share)`` in version order, shares summing to 1, with rollback overrides.

        A version overridden to weight 0 hands its share to the control arm.
        """
        if not overrides:
            return list(self._shares)
        shares = dict(self._shares)
        for version, weight in overrides.items():
            if version in shares:
                freed = shares[version] - weight / self.total
                shares[version] = weight / self.total
                control = self.control_version
                if control != version:
                    shares[control] = shares.get(control, 0.0) + freed
        total = sum(shares.values())
        if total <= 0:  # every arm overridden away: the control serves
            return [(self.control_version, 1.0)]
        return [(v, s / total) for v, s in sorted(shares.items())]

    def primary(self, overrides: Mapping[int, float] | None = None) -> int:
        """The version served without a caller key: the heaviest arm (ties: the lower version)."""
        weights = self.weights(overrides)
        return max(weights, key=lambda vw: (vw[1], -vw[0]))[0]

    def choose(self, key: str, overrides: Mapping[int, float] | None = None) -> int:
        """The version a caller key is assigned to (sticky: the same key, the same arm)."""
        point = bucket(key, self.experiment)
        cumulative = 0.0
        weights = self.weights(overrides)
        for version, share in weights:
            cumulative += share
            if point < cumulative:
                return version
        return next(v for v, s in reversed(weights) if s > 0)


def parse_labels(
    located: LocatedYaml, versions: Callable[[str], Sequence[int]], names: Sequence[str]
) -> tuple[dict[str, dict[str, LabelEntry]], list[LineProblem]]:
    """Parse a labels file's YAML into entries; problems name the line.

    Args:
        located: The parsed file with its line map.
        versions: The versions that exist for a prompt name.
        names: Every prompt name (for "known: ..." in errors).

    Returns:
        ``label -> name -> entry`` and the problems found.
    """
    parser = _Parser(located, versions, names)
    parser.run()
    return parser.entries, parser.problems


class _Parser:
    def __init__(
        self, located: LocatedYaml, versions: Callable[[str], Sequence[int]], names: Sequence[str]
    ) -> None:
        self.located = located
        self.versions = versions
        self.names = names
        self.entries: dict[str, dict[str, LabelEntry]] = {}
        self.problems: list[LineProblem] = []

    def line(self, *loc: str | int) -> int | None:
        return self.located.line_of(list(loc))

    def problem(self, loc: tuple[str | int, ...], message: str) -> None:
        self.problems.append((self.line(*loc), message))

    def run(self) -> None:
        data = self.located.data or {}
        if not isinstance(data, dict):
            self.problems.append((1, "labels.yaml maps each label to name@vN references"))
            return
        for label, value in data.items():
            loc: tuple[str | int, ...] = (str(label),)
            if (
                not isinstance(label, str)
                or not re.fullmatch(r"[a-z][a-z0-9_-]*", label)
                or (_VERSION_RE.fullmatch(label))
            ):
                self.problem(loc, f"bad label {label!r}: use a-z, 0-9, '_' and '-' (not vN)")
                continue
            if label == "latest":
                self.problem(loc, "'latest' is built in (the highest version); choose another label")
                continue
            self.entries.setdefault(label, {})
            if isinstance(value, str):
                self.plain(label, value, loc)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    self.item(label, item, (*loc, i))
            elif isinstance(value, dict):
                for name, spec in value.items():
                    self.named(label, str(name), spec, (*loc, str(name)))
            else:
                self.problem(loc, f"label {label!r} must list name@vN references (or map names to versions)")

    def item(self, label: str, item: Any, loc: tuple[str | int, ...]) -> None:
        if isinstance(item, str):
            self.plain(label, item, loc)
        elif isinstance(item, dict) and len(item) == 1:
            name, spec = next(iter(item.items()))
            self.named(label, str(name), spec, (*loc, str(name)))
        else:
            self.problem(
                loc, f"label {label!r}: each item is name@vN or a one-key mapping name: {{v2: 90, v3: 10}}"
            )

    def plain(self, label: str, text: str, loc: tuple[str | int, ...]) -> None:
        name, at, tag = text.strip().partition("@")
        if not at or not re.fullmatch(NAME_PATTERN, name):
            self.problem(loc, f"label {label!r}: {text!r} must name a version, like {name or 'name'}@v1")
            return
        self.add(label, name, {tag: 100}, None, None, loc, single=True)

    def named(self, label: str, name: str, spec: Any, loc: tuple[str | int, ...]) -> None:
        if not re.fullmatch(NAME_PATTERN, name):
            self.problem(loc, f"label {label!r}: bad prompt name {name!r}")
            return
        if isinstance(spec, str):
            tag = spec.strip().removeprefix(f"{name}@")
            self.add(label, name, {tag: 100}, None, None, loc, single=True)
            return
        if not isinstance(spec, dict):
            self.problem(loc, f"label {label!r}: {name} takes a version (v2) or a split ({{v2: 90, v3: 10}})")
            return
        weights: dict[str, Any]
        if "split" in spec:
            unknown = sorted(set(map(str, spec)) - _ENTRY_KEYS)
            if unknown:
                self.problem(
                    (*loc, unknown[0]),
                    f"unknown key {unknown[0]!r} under {label}.{name} (split, canary, shadow)",
                )
                return
            if not isinstance(spec["split"], dict):
                self.problem(
                    (*loc, "split"), f"{label}.{name}.split maps versions to weights: {{v2: 90, v3: 10}}"
                )
                return
            weights, wloc = dict(spec["split"]), (*loc, "split")
        else:
            weights = {str(k): v for k, v in spec.items() if str(k) not in ("canary", "shadow")}
            wloc = loc
            bad = [k for k in weights if not _VERSION_RE.fullmatch(k)]
            if bad:
                self.problem(
                    (*loc, bad[0]),
                    f"unknown key {bad[0]!r} under {label}.{name} (vN weights, split, canary, shadow)",
                )
                return
        canary = self.spec(CanarySpec, spec.get("canary"), (*loc, "canary"), f"{label}.{name}.canary")
        shadow = self.spec(ShadowSpec, spec.get("shadow"), (*loc, "shadow"), f"{label}.{name}.shadow")
        if canary is False or shadow is False:
            return
        self.add(label, name, weights, canary, shadow, loc, wloc=wloc)

    def spec(
        self, model: type[CanarySpec] | type[ShadowSpec], value: Any, loc: tuple[str | int, ...], where: str
    ) -> Any:
        if value is None:
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            sub = tuple(str(p) for p in error["loc"])
            field_name = ".".join(sub)
            if error["type"] == "extra_forbidden":
                message = f"unknown key {sub[-1]!r} under {where}"
            elif error["type"] == "missing":
                message = f"{where} needs {field_name!r}"
            else:
                message = f"{where}.{field_name}: {str(error['msg']).removeprefix('Value error, ')}"
            self.problem((*loc, *sub), message)
            return False

    def add(
        self,
        label: str,
        name: str,
        weights: dict[str, Any],
        canary: CanarySpec | None,
        shadow: ShadowSpec | None,
        loc: tuple[str | int, ...],
        *,
        single: bool = False,
        wloc: tuple[str | int, ...] | None = None,
    ) -> None:
        have = list(self.versions(name))
        if not have:
            known = ", ".join(self.names) or "none"
            self.problem(loc, f"label {label!r} points at unknown prompt {name!r} (known: {known})")
            return
        listed = ", ".join(f"v{v}" for v in have)
        arms: list[Arm] = []
        for tag, weight in weights.items():
            where = loc if single else (*(wloc or loc), tag)
            match = _VERSION_RE.fullmatch(str(tag))
            if match is None:
                self.problem(where, f"label {label!r}: {name}@{tag} must name a version, like {name}@v1")
                return
            version = int(match.group(1))
            if version not in have:
                self.problem(
                    where,
                    f"label {label!r} points at {name}@v{version}, which does not exist (versions: {listed})",
                )
                return
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
                self.problem(
                    where, f"label {label!r}: the weight of {name}@{tag} must be a number, got {weight!r}"
                )
                return
            if weight < 0:
                self.problem(where, f"label {label!r}: the weight of {name}@{tag} is negative ({weight})")
                return
            arms.append(Arm(version, float(weight), self.line(*where)))
        if not arms:
            self.problem(loc, f"label {label!r}: {name} has an empty split")
            return
        total = sum(a.weight for a in arms)
        if not single and not (abs(total - 100) <= _TOLERANCE or abs(total - 1) <= _TOLERANCE):
            shown = ", ".join(f"{a.tag}: {a.weight:g}" for a in arms)
            self.problem(
                wloc or loc,
                f"label {label!r}: the weights of {name} ({shown}) sum to {total:g}; "
                "write percentages that sum to 100 (or fractions that sum to 1)",
            )
            return
        arms.sort(key=lambda a: a.version)
        if canary is not None and not self.canary_ok(label, name, canary, arms, have, (*loc, "canary")):
            return
        if shadow is not None and not self.shadow_ok(label, name, shadow, (*loc, "shadow")):
            return
        by_name = self.entries[label]
        if name in by_name:
            self.problem(loc, f"label {label!r} names {name!r} twice")
            return
        by_name[name] = LabelEntry(
            label, name, tuple(arms), canary, shadow, self.line(*loc), self.located.path, total
        )

    def canary_ok(
        self,
        label: str,
        name: str,
        canary: CanarySpec,
        arms: list[Arm],
        have: list[int],
        loc: tuple[str | int, ...],
    ) -> bool:
        in_split = {a.version for a in arms}
        version = int(canary.arm[1:])
        if version not in in_split:
            split = ", ".join(a.tag for a in arms)
            self.problem(
                (*loc, "arm"), f"{label}.{name}.canary: {canary.arm} is not an arm of the split ({split})"
            )
            return False
        if canary.control is not None:
            control = int(canary.control[1:])
            if control == version or control not in in_split:
                self.problem(
                    (*loc, "control"),
                    f"{label}.{name}.canary: control {canary.control} must be another arm of the split",
                )
                return False
        elif len(arms) < 2:
            self.problem(
                loc,
                f"{label}.{name}.canary: a canary needs a control arm to compare with; split traffic "
                f"between {canary.arm} and the current version (e.g. {{v{min(have)}: 90, {canary.arm}: 10}})",
            )
            return False
        return True

    def shadow_ok(self, label: str, name: str, shadow: ShadowSpec, loc: tuple[str | int, ...]) -> bool:
        if shadow.prompt is None and shadow.route is None:
            self.problem(loc, f"{label}.{name}.shadow names neither a prompt (name@vN) nor a route")
            return False
        if shadow.prompt is None:
            return True
        target, at, tag = shadow.prompt.partition("@")
        match = _VERSION_RE.fullmatch(tag)
        if not at or match is None:
            self.problem(
                (*loc, "prompt"),
                f"{label}.{name}.shadow.prompt {shadow.prompt!r} must name a version, like {name}@v3",
            )
            return False
        have = list(self.versions(target))
        if not have:
            known = ", ".join(self.names) or "none"
            self.problem(
                (*loc, "prompt"), f"{label}.{name}.shadow names unknown prompt {target!r} (known: {known})"
            )
            return False
        if int(match.group(1)) not in have:
            listed = ", ".join(f"v{v}" for v in have)
            self.problem(
                (*loc, "prompt"),
                f"{label}.{name}.shadow names {shadow.prompt}, which does not exist (versions: {listed})",
            )
            return False
        return True
