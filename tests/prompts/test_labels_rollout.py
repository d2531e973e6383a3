"""labels.yaml splits, canaries and shadows: sticky assignment, persisted rollbacks, the one-line
promote/rollback edit, and bad configs named by file and line."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiapp.errors import PromptError
from aiapp.prompts import PromptRegistry, RolloutState, get, promote, rollback
from aiapp.tracing import Tracer, TraceStore

PROMPT = """\
name: {name}
version: {version}
variables:
  q: {{type: string}}
messages:
  - role: user
    content: "v{version}: {{{{ q }}}}"
"""

LABELS = """\
# Deploy labels (comments survive edits).
production:
  - other@v1                              # list form still works
  - answer: {v2: 90, v3: 10}              # a split as a list item
staging:
  answer:
    split: {v1: 50, v2: 50}
    canary: {arm: v2, error_rate: 0.05, min_samples: 50}
    shadow: {prompt: answer@v3, sample: 0.5, max_in_flight: 2}
  other: v1
"""


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    root = tmp_path / "prompts"
    for name, versions in (("answer", (1, 2, 3)), ("other", (1,))):
        for v in versions:
            path = root / name / f"v{v}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(PROMPT.format(name=name, version=v))
    (root / "labels.yaml").write_text(LABELS)
    return root


def labels(root: Path, text: str) -> PromptRegistry:
    (root / "labels.yaml").write_text(textwrap.dedent(text))
    return PromptRegistry(root)


def test_list_form_mapping_form_and_list_item_splits_all_load(prompts: Path) -> None:
    registry = PromptRegistry(prompts)
    assert registry.problems == []
    split = registry.entry("answer", "production")
    assert split is not None and [(a.version, a.weight) for a in split.arms] == [(2, 90.0), (3, 10.0)]
    assert registry.get("answer").version == 2  # no key: the heaviest arm
    assert registry.get("other", label="staging").version == 1
    staging = registry.entry("answer", "staging")
    assert staging is not None and staging.canary is not None and staging.shadow is not None
    assert staging.control_version == 1 and staging.canary_version == 2
    assert registry.labels("answer")["production"] == 2


def test_a_90_10_split_over_10k_keys_is_within_binomial_tolerance_and_sticky(prompts: Path) -> None:
    registry = PromptRegistry(prompts)
    arms = {f"user-{i}": registry.get("answer", key=f"user-{i}").version for i in range(10_000)}
    counts = Counter(arms.values())
    sd = math.sqrt(10_000 * 0.1 * 0.9)
    assert abs(counts[3] - 1000) <= 4 * sd and counts[2] + counts[3] == 10_000, counts
    again = PromptRegistry(prompts)  # another process, another registry: the same arms
    assert all(again.get("answer", key=k).version == v for k, v in list(arms.items())[::13])


def test_moving_weight_only_moves_keys_across_the_boundary(prompts: Path) -> None:
    before = PromptRegistry(prompts)
    arms = {f"u{i}": before.get("answer", key=f"u{i}").version for i in range(3000)}
    text = (prompts / "labels.yaml").read_text().replace("{v2: 90, v3: 10}", "{v2: 80, v3: 20}")
    (prompts / "labels.yaml").write_text(text)
    after = PromptRegistry(prompts)
    assert all(after.get("answer", key=k).version == 3 for k, v in arms.items() if v == 3)


def test_the_arm_is_recorded_on_the_open_span(prompts: Path) -> None:
    store = TraceStore(":memory:")
    tracer = Tracer(store)
    registry = PromptRegistry(prompts)
    with tracer.span("app", "demo"):
        prompt = registry.get("answer", label="production", key="alice")
    span = store.recent(1)[0]
    rollout = span.attributes["rollout"]
    assert rollout["experiment"] == "production/answer" and rollout["arm"] == f"v{prompt.version}"
    assert rollout["key"] != "alice"  # hashed


def test_a_rollback_override_is_persisted_and_gives_the_share_to_the_control(
    prompts: Path, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.json"
    registry = PromptRegistry(prompts, state=RolloutState(state_file))
    entry = registry.entry("answer", "production")
    assert entry is not None
    registry.roll_back(entry, 3, "error_rate too high")
    restarted = PromptRegistry(prompts, state=RolloutState(state_file))
    assert {restarted.get("answer", key=f"k{i}").version for i in range(500)} == {2}
    # Editing the split (a new experiment) retires the override.
    text = (prompts / "labels.yaml").read_text().replace("{v2: 90, v3: 10}", "{v2: 80, v3: 20}")
    (prompts / "labels.yaml").write_text(text)
    edited = PromptRegistry(prompts, state=RolloutState(state_file))
    assert 3 in {edited.get("answer", key=f"k{i}").version for i in range(500)}


def test_get_with_a_key_uses_the_configured_directory(prompts: Path) -> None:
    assert get("answer", key="bob", directory=prompts).version in (2, 3)


# -- promote and rollback: one line, comments kept, atomic --------------------------------------


def test_promote_a_split_arm_edits_one_line_and_keeps_comments(prompts: Path) -> None:
    before = (prompts / "labels.yaml").read_text().splitlines()
    change = promote(prompts, "answer@v3", label="production")
    after = (prompts / "labels.yaml").read_text().splitlines()
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1 and len(change.lines) == 1
    assert after[changed[0]] == "  - answer: {v2: 0, v3: 100}              # a split as a list item"
    assert after[0] == "# Deploy labels (comments survive edits)."
    assert PromptRegistry(prompts).get("answer", key="anyone").version == 3
    assert not [p for p in prompts.iterdir() if p.name.endswith(".tmp")]


def test_rollback_drops_the_canary_and_a_plain_entry_goes_back_a_version(prompts: Path) -> None:
    change = rollback(prompts, "answer", label="staging")
    assert change.lines[0][2] == "    split: {v1: 100, v2: 0}"
    assert {
        PromptRegistry(prompts).get("answer", label="staging", key=f"k{i}").version for i in range(200)
    } == {1}
    assert promote(prompts, "other@v1", label="production").lines == ()  # already served: no change
    with pytest.raises(PromptError, match="no earlier version"):
        rollback(prompts, "other", label="production")


def test_promote_a_plain_entry(prompts: Path) -> None:
    (prompts / "labels.yaml").write_text("production:\n  - answer@v1   # current\n")
    change = promote(prompts, "answer@v2")
    assert change.lines == ((2, "  - answer@v1   # current", "  - answer@v2   # current"),)
    rollback(prompts, "answer")
    assert PromptRegistry(prompts).get("answer").version == 1


def test_the_cli_promotes_and_rolls_back(prompts: Path) -> None:
    from aiapp.cli._app import app

    result = CliRunner().invoke(
        app, ["prompts", "rollback", "answer", "--label", "staging", "--dir", str(prompts)]
    )
    assert result.exit_code == 0, result.output
    assert "rolled back v2" in result.output and "labels.yaml:7" in result.output


# -- bad configs, each named by file and line ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("production:\n  answer: {v2: 90, v3: 20}\n", 2, "sum to 110; write percentages that sum to 100"),
        ("production:\n  answer:\n    split:\n      v2: 100\n      v3: -5\n", 5, "is negative"),
        ("production:\n  answer: {v2: 0, v3: 0}\n", 2, "sum to 0"),
        ("production:\n  answer: {v2: ninety, v3: 10}\n", 2, "must be a number"),
        (
            "production:\n  answer:\n    split: {v2: 100}\n    shadow: {prompt: answer@v9}\n",
            4,
            "shadow names answer@v9, which does not exist (versions: v1, v2, v3)",
        ),
        (
            "production:\n  answer:\n    split: {v3: 100}\n    canary: {arm: v3}\n",
            4,
            "a canary needs a control arm",
        ),
        (
            "production:\n  answer:\n    split: {v1: 90, v2: 10}\n    canary: {arm: v3}\n",
            4,
            "v3 is not an arm of the split",
        ),
        (
            "production:\n  answer:\n    split: {v1: 90, v2: 10}\n    canary: {arm: v2, typo: 1}\n",
            4,
            "unknown key 'typo'",
        ),
        ("production:\n  answer: {v2: 90, v7: 10}\n", 2, "answer@v7, which does not exist"),
    ],
)
def test_bad_rollout_configs_name_labels_yaml_and_the_line(
    prompts: Path, text: str, line: int, message: str
) -> None:
    registry = labels(prompts, text)
    problems = registry.check()
    assert problems, "expected a problem"
    problem = problems[0]
    assert problem.path == str(prompts / "labels.yaml") and problem.line == line
    assert message in problem.message


def test_prompts_check_catches_them(prompts: Path) -> None:
    from aiapp.cli._app import app

    labels(prompts, "production:\n  answer:\n    split: {v3: 100}\n    canary: {arm: v3}\n")
    result = CliRunner().invoke(app, ["prompts", "check", "--dir", str(prompts)])
    assert result.exit_code == 1
    assert f"{prompts / 'labels.yaml'}:4:" in result.output and "control arm" in result.output


def test_prompts_list_shows_each_arms_share(prompts: Path) -> None:
    import json

    from aiapp.cli._app import app

    result = CliRunner().invoke(app, ["prompts", "list", "--json", "--dir", str(prompts)])
    rows = {r["ref"]: r["labels"] for r in json.loads(result.output)}
    assert rows["answer@v2"] == ["production 90%", "staging 50%"] and rows["answer@v3"] == [
        "latest",
        "production 10%",
    ]
    assert rows["other@v1"] == ["production", "staging", "latest"]


def test_check_with_routes_refuses_a_shadow_on_an_unknown_route(prompts: Path) -> None:
    registry = labels(prompts, "production:\n  answer:\n    split: {v2: 100}\n    shadow: {route: nowhere}\n")
    assert registry.check() == []  # without the config, routes are not known
    (problem,) = registry.check(routes=["local", "openai"])
    assert problem.line == 2 and "shadow names route 'nowhere', which is not configured" in problem.message
