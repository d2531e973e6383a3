"""Canaries: an arm whose live error rate (or negative feedback) regresses against the control is
rolled back automatically — persisted across restarts and recorded as a span `aiapp traces` shows."""

from __future__ import annotations

from pathlib import Path

from rollout_helpers import Flaky, make_prompts
from typer.testing import CliRunner

from aiapp.config import Settings
from aiapp.errors import ProviderError
from aiapp.gateway import Gateway
from aiapp.prompts import PromptRegistry
from aiapp.rollout import Rollout, arm_metrics
from aiapp.testing import FakeModel

LABELS = """\
production:
  answer:
    split: {v1: 50, v2: 50}
    canary: {arm: v2, error_rate: 0.05, min_samples: 30, check_every: 10}
"""


def setup(tmp_path: Path, canary_every: int, labels: str = LABELS) -> tuple[Rollout, Gateway]:
    prompts = make_prompts(tmp_path / "prompts", labels, models={1: "control", 2: "canary"})
    gw = Gateway(
        Settings(prompts={"dir": prompts}),
        models={"control": FakeModel(name="test/control", default="fine"), "canary": Flaky(canary_every)},
    )
    return Rollout(gw, PromptRegistry.from_settings(gw.settings)), gw


def drive(rollout: Rollout, users: range) -> dict[str, int]:
    errors = {"v1": 0, "v2": 0}
    for i in users:
        arm = rollout.assign("answer", key=f"user-{i}").arm
        try:
            rollout.complete("answer", {"question": f"q{i}"}, key=f"user-{i}")
        except ProviderError:
            errors[arm] += 1
    return errors


def test_a_canary_with_a_high_error_rate_is_rolled_back_and_the_rollback_is_traced(tmp_path: Path) -> None:
    rollout, gw = setup(tmp_path, canary_every=2)  # half the canary's calls fail
    errors = drive(rollout, range(200))
    assert errors["v1"] == 0 and errors["v2"] > 0
    assert len(rollout.rollbacks) == 1
    event = rollout.rollbacks[0]
    assert event.experiment == "production/answer" and event.arm == "v2" and event.control == "v1"
    assert event.regression.metric == "error_rate" and event.regression.canary > 0.3
    assert min(event.regression.samples) >= 30
    # The canary now gets no traffic ...
    assert {rollout.assign("answer", key=f"late-{i}").arm for i in range(300)} == {"v1"}
    # ... and a restart (a new registry on the same $AIAPP_HOME) keeps it that way.
    restarted = PromptRegistry.from_settings(gw.settings)
    assert {restarted.get("answer", key=f"late-{i}").version for i in range(300)} == {1}
    # The rollback is a span, visible in `aiapp traces`.
    store = gw.tracer.store
    assert store is not None
    span = store.recent(5, kind="rollout")[0]
    assert span.name == "rollback" and span.attributes["rollback"]["metric"] == "error_rate"
    assert span.attributes["rollout"]["arm"] == "v2" and span.trace_id == event.trace_id
    from aiapp.cli._app import app

    listed = CliRunner().invoke(app, ["traces", "--kind", "rollout", "--json"])
    assert listed.exit_code == 0 and '"name": "rollback"' in listed.output
    shown = CliRunner().invoke(app, ["traces", "show", event.trace_id])
    assert shown.exit_code == 0 and "[rollout] rollback" in shown.output, shown.output


def test_a_healthy_canary_is_not_rolled_back(tmp_path: Path) -> None:
    rollout, _ = setup(tmp_path, canary_every=10_000)
    drive(rollout, range(200))
    assert rollout.rollbacks == [] and rollout.check() == []
    assert {rollout.assign("answer", key=f"u{i}").arm for i in range(100)} == {"v1", "v2"}


def test_too_few_samples_never_roll_back(tmp_path: Path) -> None:
    rollout, _ = setup(tmp_path, canary_every=1)  # every canary call fails, but only a few calls
    drive(rollout, range(20))
    assert rollout.check() == []


def test_negative_feedback_rolls_back_too(tmp_path: Path) -> None:
    labels = LABELS.replace("error_rate: 0.05", "error_rate: null, negative_feedback: 0.2").replace(
        "check_every: 10", "check_every: 100000"
    )
    rollout, gw = setup(tmp_path, canary_every=10_000, labels=labels)
    for i in range(120):
        reply = rollout.complete("answer", {"question": f"q{i}"}, key=f"u{i}")
        arm = rollout.assign("answer", key=f"u{i}").arm
        assert reply.trace_id is not None
        gw.feedback(reply.trace_id, -1.0 if arm == "v2" and i % 2 == 0 else 1.0)
    store = gw.tracer.store
    assert store is not None
    metrics = arm_metrics(store, "production/answer")
    assert metrics["v2"].negative > 0 and metrics["v1"].negative == 0
    (event,) = rollout.check()
    assert event.regression.metric == "negative_feedback" and event.arm == "v2"


def test_rollout_status_and_check_from_the_cli(tmp_path: Path, monkeypatch: object) -> None:
    import json

    import yaml

    rollout, _ = setup(tmp_path, canary_every=2)
    drive(rollout, range(200))
    config = tmp_path / "aiapp.yaml"
    config.write_text(yaml.safe_dump({"prompts": {"dir": str(tmp_path / "prompts")}}))
    from aiapp.cli._app import app

    status = CliRunner().invoke(app, ["rollout", "status", "--json", "--config", str(config)])
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.output)
    assert row["experiment"] == "production/answer" and row["serving"] == {"v1": 100.0, "v2": 0.0}
    assert "error_rate" in row["rolled_back"]["v2"]["reason"]
    check = CliRunner().invoke(app, ["rollout", "check", "--config", str(config)])
    assert check.exit_code == 0 and "no canary regressed" in check.output  # already rolled back
