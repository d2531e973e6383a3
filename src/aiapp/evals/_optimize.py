"""Prompt optimisation: search few-shot examples and instruction variants against an eval suite.

``aiapp prompts optimize NAME --suite S`` (or :func:`optimize`):

1. splits the suite's cases into a train and a held-out split (seeded);
2. runs the current version of ``NAME`` on the train split and *bootstraps* few-shot examples
   from the cases it gets right (its own outputs, as in DSPy's BootstrapFewShot);
3. asks a route (``proposer``) for instruction variants (structured output; a reply that is not
   the schema is re-asked once, then counted, never a crash);
4. scores up to ``trials`` candidates — instruction × example subset — on the train split, within
   ``budget_usd`` (every evaluated sample's recorded cost, plus the proposer's calls);
5. confirms the best one against the current version on the held-out split with a paired test
   (bootstrap interval of the per-case difference must lie above 0);
6. writes ``prompts/NAME/v<N+1>.yaml`` — its provenance (suite, splits, scores, interval, budget
   spent) in a comment header for the reviewer — and never touches ``labels.yaml``: promoting it
   is a reviewed, separate step (``aiapp prompts promote``).

Candidates are evaluated through the suite's own target, exactly as ``aiapp eval`` would, from a
scratch copy of the prompts folder; results land in ``$AIAPP_HOME/evals`` like any run, so a
repeated optimisation resumes instead of paying again.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from aiapp._files import atomic_write
from aiapp.errors import InputError, OutputParseError, PromptError, UserError
from aiapp.evals._api import prepare
from aiapp.evals._score import Case
from aiapp.evals._stats import PairedDifference, paired_difference
from aiapp.evals._suite import Suite, load_suite
from aiapp.gateway import run_sync
from aiapp.types import CallOptions, Message, ResponseFormat

if TYPE_CHECKING:
    from aiapp.gateway import Gateway
    from aiapp.prompts import Prompt

Progress = Callable[[str], None]


class InstructionVariants(BaseModel):
    """The proposer's structured reply."""

    model_config = ConfigDict(extra="ignore")

    instructions: list[str]


@dataclass(frozen=True)
class Candidate:
    """One prompt variant: an instruction (``None``: the current one) and few-shot examples."""

    instruction: int | None
    examples: tuple[str, ...]

    def describe(self) -> str:
        """One line for reports."""
        instr = (
            "current instruction" if self.instruction is None else f"instruction variant {self.instruction}"
        )
        shots = ", ".join(self.examples) if self.examples else "no bootstrapped examples"
        return f"{instr}; examples: {shots}"


@dataclass
class Trial:
    """A candidate's train score."""

    candidate: Candidate
    mean: float | None
    n: int
    cost_usd: float | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "candidate": self.candidate.describe(),
            "instruction": self.candidate.instruction,
            "examples": list(self.candidate.examples),
            "train_mean": self.mean,
            "n": self.n,
            "cost_usd": self.cost_usd,
        }


@dataclass
class OptimizeResult:
    """What an optimisation found, and the file it wrote (``None`` when nothing was confirmed)."""

    prompt: str
    base_ref: str
    suite: str
    metric: str
    train_ids: list[str]
    heldout_ids: list[str]
    baseline_train: float | None
    demos: list[str]
    instructions: list[str]
    trials: list[Trial] = field(default_factory=list)
    winner: Trial | None = None
    heldout_baseline: float | None = None
    heldout_winner: float | None = None
    difference: PairedDifference | None = None
    confirmed: bool = False
    spent_usd: float = 0.0
    cost_known: bool = True
    stopped: str = ""
    problems: dict[str, int] = field(default_factory=dict)
    written: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "prompt": self.prompt,
            "base": self.base_ref,
            "suite": self.suite,
            "metric": self.metric,
            "train_cases": len(self.train_ids),
            "heldout_cases": len(self.heldout_ids),
            "baseline_train": self.baseline_train,
            "bootstrapped_examples": self.demos,
            "instruction_variants": self.instructions,
            "trials": [t.as_dict() for t in self.trials],
            "winner": self.winner.as_dict() if self.winner else None,
            "heldout_baseline": self.heldout_baseline,
            "heldout_winner": self.heldout_winner,
            "difference": self.difference.as_dict() if self.difference else None,
            "confirmed": self.confirmed,
            "spent_usd": round(self.spent_usd, 6),
            "cost_known": self.cost_known,
            "stopped": self.stopped,
            "problems": self.problems,
            "written": str(self.written) if self.written else None,
        }


PROPOSER_SYSTEM = (
    "You improve the instructions (system message) of an LLM prompt. You are shown the current "
    "instructions and cases it got wrong. Propose alternative instructions that keep every "
    "{{ placeholder }} and rule that matters and help with such cases. Reply with JSON only: "
    '{"instructions": ["...", ...]}.'
)


def split_cases(cases: Sequence[Case], *, holdout: float, seed: int) -> tuple[list[Case], list[Case]]:
    """A seeded train / held-out split (at least two cases in each)."""
    if not 0 < holdout < 1:
        raise InputError(f"--holdout must be between 0 and 1, got {holdout}")
    order = random.Random(seed).sample(list(cases), len(cases))
    n_hold = max(2, round(len(order) * holdout))
    if len(order) - n_hold < 2:
        raise InputError(f"the suite has {len(cases)} cases: too few for a train and a held-out split (4+)")
    return order[n_hold:], order[:n_hold]


@contextmanager
def _scratch_prompts(gateway: Gateway, source: Path) -> Iterator[Path]:
    """A scratch copy of the prompts folder that the gateway's targets read while it is open."""
    from aiapp.config import PromptSettings

    with tempfile.TemporaryDirectory(prefix="aiapp-optimize-") as tmp:
        scratch = Path(tmp) / "prompts"
        shutil.copytree(source, scratch)
        before = gateway.settings.prompts
        gateway.settings.prompts = PromptSettings(dir=scratch)
        try:
            yield scratch
        finally:
            gateway.settings.prompts = before


def _dump_yaml(data: dict[str, Any]) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _prompt_data(prompt: Prompt) -> dict[str, Any]:
    from aiapp._yaml import load_yaml

    if prompt.source is None:
        raise PromptError(f"{prompt.ref} was not loaded from a file; optimisation writes a new file")
    data = load_yaml(prompt.source, path=prompt.path or prompt.ref).data
    if not isinstance(data, dict):
        raise PromptError(f"{prompt.ref}: not a mapping", path=prompt.path)
    return dict(data)


def _candidate_data(
    base: dict[str, Any],
    version: int,
    candidate: Candidate,
    instructions: list[str],
    demos: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(base, default=str))
    data["version"] = version
    if candidate.instruction is not None:
        text = instructions[candidate.instruction]
        messages = list(data.get("messages") or [])
        system = next((i for i, m in enumerate(messages) if m.get("role") == "system"), None)
        if system is None:
            messages.insert(0, {"role": "system", "content": text})
        else:
            messages[system] = {**messages[system], "content": text}
        data["messages"] = messages
    if candidate.examples:
        data["examples"] = list(data.get("examples") or []) + [demos[c] for c in candidate.examples]
    return data


class _Evaluator:
    """Runs the suite's target with one prompt version on a subset of cases; tracks spend."""

    def __init__(self, gateway: Gateway, suite: Suite, metric: str, scratch: Path, name: str) -> None:
        self.gateway, self.suite, self.metric, self.scratch, self.name = gateway, suite, metric, scratch, name
        self.spent = 0.0
        self.cost_known = True
        self.samples = 0
        self._counted: set[tuple[str, str, int]] = set()

    def write(self, data: dict[str, Any]) -> str:
        from aiapp.prompts import PromptRegistry

        folder = self.scratch / self.name
        atomic_write(folder / f"v{data['version']}.yaml", _dump_yaml(data))
        ref = f"{self.name}@v{data['version']}"
        PromptRegistry(self.scratch).get(ref)  # a broken candidate fails here, with its reason
        return ref

    def run(self, ref: str, cases: list[Case]) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        """Per-case metric values and the stored result rows of ``ref`` on ``cases``."""
        prepared = prepare(self.suite, self.gateway, override=ref)
        prepared.cases = cases
        result = run_sync(prepared.runner.arun(cases))
        wanted = {c.id for c in cases}
        rows: dict[str, dict[str, Any]] = {}
        for row in result.iter_rows():
            if row["case_id"] not in wanted:
                continue
            rows[str(row["case_id"])] = row
            key = (str(result.run_dir), str(row["case_id"]), int(row.get("repeat") or 0))
            if key in self._counted:  # a sample is paid for once, however often it is read back
                continue
            self._counted.add(key)
            self.samples += 1
            cost = ((row.get("output") or {}).get("usage") or {}).get("cost_usd")
            if cost is None:
                self.cost_known = False
            else:
                self.spent += float(cost)
        return {k: v for k, v in result.case_values(self.metric).items() if k in wanted}, rows

    def per_sample(self) -> float:
        return self.spent / self.samples if self.samples else 0.0


def _mean(values: dict[str, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None


def _demo_vars(prompt: Prompt, case: Case, row: dict[str, Any]) -> dict[str, Any] | None:
    """The example variables for a case the prompt got right (``None``: not every variable can be filled)."""
    values: dict[str, Any] = dict(case.input) if isinstance(case.input, dict) else {"question": case.input}
    hits = (row.get("output") or {}).get("hits") or []
    if "context" in prompt.variables and "context" not in values and hits:
        values["context"] = "\n\n".join(
            f"[{n}] {h.get('source', '')}\n{str(h.get('text', '')).strip()}" for n, h in enumerate(hits, 1)
        )
    values = {k: v for k, v in values.items() if k in prompt.variables}
    missing = [k for k, spec in prompt.variables.items() if spec.is_required and k not in values]
    return None if missing else values


def _propose(
    gateway: Gateway,
    route: str | None,
    prompt: Prompt,
    failures: list[tuple[Case, str]],
    count: int,
    problems: dict[str, int],
) -> tuple[list[str], float | None]:
    current = next((m.content for m in prompt.messages if m.role == "system"), "")
    shown = "\n\n".join(
        f"<case>\ninput: {json.dumps(c.input, ensure_ascii=False)}\nexpected: {c.expected}\ngot: {got}\n</case>"
        for c, got in failures[:3]
    )
    messages = [
        Message.system(PROPOSER_SYSTEM),
        Message.user(
            f"<instructions>\n{current}\n</instructions>\n\n{shown or '(no failures on the train split)'}\n\n"
            f"Propose {count} alternative instructions."
        ),
    ]
    options = CallOptions(response_format=ResponseFormat.from_model(InstructionVariants))
    cost: float | None = 0.0
    for _ in range(2):
        try:
            reply = gateway.complete(messages, model=route, options=options)
        except UserError:
            raise
        except Exception as exc:  # the search goes on with the current instruction
            problems[f"proposer failed: {type(exc).__name__}"] = (
                problems.get(f"proposer failed: {type(exc).__name__}", 0) + 1
            )
            continue
        cost = None if reply.usage.cost_usd is None or cost is None else cost + reply.usage.cost_usd
        try:
            variants = InstructionVariants.model_validate(reply.json_data()).instructions
        except (OutputParseError, ValueError, ValidationError):
            problems["proposer reply is not the schema"] = (
                problems.get("proposer reply is not the schema", 0) + 1
            )
            continue
        unique = [v.strip() for v in dict.fromkeys(variants) if v.strip() and v.strip() != current.strip()]
        return unique[:count], cost
    return [], cost


def _candidates(
    n_instructions: int, demos: list[str], max_examples: int, trials: int, seed: int
) -> list[Candidate]:
    """Up to ``trials`` distinct candidates (never the current prompt itself), in a seeded order."""
    subsets: list[tuple[str, ...]] = [()]
    for size in range(1, min(max_examples, len(demos)) + 1):
        subsets += list(itertools.combinations(demos, size))
    if len(subsets) > 4 * trials:  # many demos: a seeded sample of subsets, not all of them
        rng = random.Random(seed)
        subsets = [(), *rng.sample(subsets[1:], 4 * trials)]
    pool = [
        Candidate(instruction, subset)
        for instruction in [None, *range(n_instructions)]
        for subset in subsets
        if instruction is not None or subset
    ]
    return random.Random(seed).sample(pool, min(trials, len(pool)))


def optimize(
    name: str,
    suite: Suite | Path | str,
    gateway: Gateway,
    *,
    budget_usd: float = 2.0,
    trials: int = 20,
    metric: str | None = None,
    holdout: float = 0.4,
    max_examples: int = 3,
    max_demos: int = 8,
    variants: int = 3,
    proposer: str | None = None,
    seed: int = 0,
    write: bool = True,
    progress: Progress | None = None,
) -> OptimizeResult:
    """Search prompt variants of ``name`` on ``suite`` and write the confirmed winner as a new version.

    Args:
        name: The prompt (its version in the suite's target is the starting point).
        suite: The suite whose target uses ``name``.
        gateway: The gateway (routes for the target, the scorers and the proposer).
        budget_usd: Most to spend on evaluations and proposals.
        trials: Most candidates to score on the train split.
        metric: The metric to improve (default: the suite's first gated metric, else first scorer).
        holdout: Share of cases kept for the held-out confirmation.
        max_examples: Most bootstrapped examples in one candidate.
        max_demos: Most bootstrapped examples to choose from.
        variants: Instruction variants to ask the proposer for (0: none).
        proposer: Route that proposes instructions (default: the target's route).
        seed: Seed for the split and the search order.
        write: Write ``prompts/NAME/v<N+1>.yaml`` when a winner is confirmed.
        progress: Called with a line of text as the search proceeds.

    Raises:
        InputError: the suite's target does not use ``name``, too few cases, an unknown metric.
    """
    from aiapp.evals._dataset import load_cases
    from aiapp.prompts import PromptRegistry

    say = progress or (lambda _line: None)
    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    target_prompt = loaded.target.prompt or ""
    if target_prompt.split("@")[0] != name:
        raise InputError(
            f"suite {loaded.name!r} evaluates prompt {target_prompt or '(none)'!r}, not {name!r}: "
            "optimise a prompt with a suite whose target uses it"
        )
    metric = metric or next(iter(loaded.gate.metrics), None) or loaded.scorers[0].name
    if metric not in {s.name for s in loaded.scorers} | set(loaded.gate.metrics):
        raise InputError(f"metric {metric!r} is not one of suite {loaded.name!r}'s scorers")
    prompts_dir = Path(gateway.settings.prompts.dir)
    registry = PromptRegistry(prompts_dir)
    base = registry.get(target_prompt)
    next_version = max(registry.versions(name)) + 1
    cases = load_cases(loaded.dataset, base_dir=loaded.base_dir)
    train, heldout = split_cases(cases, holdout=holdout, seed=seed)
    base_data = _prompt_data(base)
    out = OptimizeResult(
        prompt=name,
        base_ref=base.ref,
        suite=loaded.name,
        metric=metric,
        train_ids=[c.id for c in train],
        heldout_ids=[c.id for c in heldout],
        baseline_train=None,
        demos=[],
        instructions=[],
    )
    with _scratch_prompts(gateway, prompts_dir) as scratch:
        ev = _Evaluator(gateway, loaded, metric, scratch, name)
        base_train, rows = ev.run(base.ref, train)
        out.baseline_train = _mean(base_train)
        say(f"{base.ref} on {len(train)} train cases: {metric} {out.baseline_train}")
        by_id = {c.id: c for c in train}
        right = sorted(
            (cid for cid, v in base_train.items() if v >= 1.0 - 1e-9), key=lambda c: train.index(by_id[c])
        )
        demos: dict[str, dict[str, Any]] = {}
        for cid in right:
            values = _demo_vars(base, by_id[cid], rows.get(cid, {}))
            text = str((rows.get(cid, {}).get("output") or {}).get("text", ""))
            if values is not None and text.strip() and len(demos) < max_demos:
                demos[cid] = {"vars": values, "output": text}
        out.demos = list(demos)
        if variants > 0:
            failures = [
                (by_id[cid], str((rows.get(cid, {}).get("output") or {}).get("text", "")))
                for cid, v in base_train.items()
                if v < 1.0 - 1e-9
            ]
            out.instructions, cost = _propose(
                gateway, proposer or base.route, base, failures, variants, out.problems
            )
            if cost is None:
                ev.cost_known = False
            else:
                ev.spent += cost
        for number, candidate in enumerate(
            _candidates(len(out.instructions), out.demos, max_examples, trials, seed), start=100
        ):
            reserve = 2 * ev.per_sample() * len(heldout)  # the held-out confirmation still to pay
            if ev.spent + ev.per_sample() * len(train) + reserve > budget_usd:
                out.stopped = f"budget: ${ev.spent:.4f} spent of ${budget_usd:g}"
                break
            data = _candidate_data(base_data, number, candidate, out.instructions, demos)
            try:
                ref = ev.write(data)
            except PromptError as exc:
                out.problems[f"candidate does not load: {exc}"[:120]] = 1
                continue
            before = ev.spent
            values, _ = ev.run(ref, train)
            out.trials.append(Trial(candidate, _mean(values), len(values), ev.spent - before))
            say(f"trial {len(out.trials)}: {candidate.describe()} → {metric} {_mean(values)}")
        scored = [t for t in out.trials if t.mean is not None]
        best = max(
            scored,
            key=lambda t: (t.mean, -len(t.candidate.examples), t.candidate.instruction is None),
            default=None,
        )
        if best is None or out.baseline_train is None or best.mean is None or best.mean <= out.baseline_train:
            out.stopped = out.stopped or "no candidate beat the current prompt on the train split"
            out.spent_usd, out.cost_known = ev.spent, ev.cost_known
            return out
        out.winner = best
        winner_data = _candidate_data(base_data, 99, best.candidate, out.instructions, demos)
        winner_ref = ev.write(winner_data)
        base_hold, _ = ev.run(base.ref, heldout)
        win_hold, _ = ev.run(winner_ref, heldout)
        out.heldout_baseline, out.heldout_winner = _mean(base_hold), _mean(win_hold)
        out.difference = paired_difference(base_hold, win_hold, confidence=loaded.gate.confidence)
        out.confirmed = out.difference is not None and out.difference.low > 0
        out.spent_usd, out.cost_known = ev.spent, ev.cost_known
        say(f"held-out: {base.ref} {out.heldout_baseline} vs winner {out.heldout_winner}")
        if not out.confirmed:
            out.stopped = "the winner did not beat the current prompt on the held-out split (paired test)"
            return out
        if write:
            final = _candidate_data(base_data, next_version, best.candidate, out.instructions, demos)
            path = prompts_dir / name / f"v{next_version}.yaml"
            if path.exists():
                raise InputError(f"{path} already exists; not overwriting a prompt version")
            atomic_write(path, _header(out, next_version) + _dump_yaml(final))
            out.written = path
    return out


def _header(result: OptimizeResult, version: int) -> str:
    diff = result.difference
    lines = [
        f"v{version}: written by `aiapp prompts optimize {result.prompt}` for review; not labelled.",
        f"Started from {result.base_ref}; suite {result.suite}, metric {result.metric}.",
        f"Split: {len(result.train_ids)} train / {len(result.heldout_ids)} held-out cases.",
        f"Train: {result.base_ref} {_fmt(result.baseline_train)} → this version "
        f"{_fmt(result.winner.mean if result.winner else None)} (best of {len(result.trials)} trials).",
        f"Held-out: {_fmt(result.heldout_baseline)} → {_fmt(result.heldout_winner)}; paired difference "
        + (f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] over {diff.n} cases." if diff else "n/a."),
        f"Candidate: {result.winner.candidate.describe() if result.winner else 'n/a'}.",
        f"Budget spent: ${result.spent_usd:.4f}"
        + ("" if result.cost_known else " (some prices unknown)")
        + ".",
        f"Written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}. Promote with `aiapp prompts promote`.",
    ]
    return "".join(f"# {line}\n" for line in lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
