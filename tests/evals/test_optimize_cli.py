"""``aiapp prompts optimize`` wiring: options, JSON output, the file it writes and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_optimize import STATE, project  # noqa: F401 - the fixture
from typer.testing import CliRunner

from aiapp.cli import app
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel

runner = CliRunner()


def test_cli_writes_the_confirmed_winner(
    project: tuple[Path, Gateway, FakeModel],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suite, gw, _ = project
    monkeypatch.setattr("aiapp.cli._common.gateway", lambda config: gw)
    result = runner.invoke(
        app,
        [
            "prompts",
            "optimize",
            "capital",
            "--suite",
            str(suite),
            "--trials",
            "20",
            "--variants",
            "0",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["confirmed"] and data["written"].endswith("capital/v2.yaml")
    assert STATE["key"] in data["winner"]["examples"]
    assert data["difference"]["low"] > 0 and data["spent_usd"] == 0.0
    assert Path(data["written"]).exists()


def test_cli_exits_1_when_nothing_is_confirmed(
    project: tuple[Path, Gateway, FakeModel],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suite, gw, _ = project
    STATE["key"] = None
    monkeypatch.setattr("aiapp.cli._common.gateway", lambda config: gw)
    result = runner.invoke(
        app, ["prompts", "optimize", "capital", "--suite", str(suite), "--trials", "4", "--variants", "0"]
    )
    assert result.exit_code == 1
    assert "nothing written: no candidate beat the current prompt" in result.output
