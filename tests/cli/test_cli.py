"""The CLI end to end, in-process through Typer's runner: offline, no API key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from aiapp.cli import app

REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_complete_works_offline_and_prints_a_trace_id() -> None:
    code, out = run("complete", "<context>Port 11434 is the default.</context> What is the default port?")
    assert code == 0
    assert "Port 11434 is the default." in out
    assert "trace: " in out and "route: local" in out


def test_complete_json_then_traces_show_it() -> None:
    code, out = run("complete", "hello", "--json")
    assert code == 0
    reply = json.loads(out)
    assert reply["route"] == "local" and reply["trace_id"]
    code, out = run("traces", "--json")
    spans = json.loads(out)
    assert spans[0]["trace_id"] == reply["trace_id"]
    assert spans[0]["model"] == "local/extractive"
    code, out = run("traces", "show", reply["trace_id"][:8])
    assert code == 0 and "[llm] local" in out and "local/extractive" in out


def test_complete_streams() -> None:
    code, out = run(
        "complete", "<context>Streams are supported.</context> Are streams supported?", "--stream"
    )
    assert code == 0 and "Streams are supported." in out


def test_models_lists_routes_with_prices() -> None:
    code, out = run("models", "--json", "--config", str(REPO / "configs" / "aiapp.yaml"))
    assert code == 0
    rows = json.loads(out)
    by_route = {(r["route"], r["order"]): r for r in rows}
    assert by_route[("local", 1)]["default"] is True
    assert by_route[("openai", 1)]["provider"] == "openai"
    assert by_route[("anthropic", 1)]["provider"] == "litellm"
    assert by_route[("openai", 1)]["price_in_per_mtok"] > 0


def test_models_check_reports_failures_and_exits_non_zero(tmp_path: Path) -> None:
    config = tmp_path / "aiapp.yaml"
    config.write_text("routes:\n  remote:\n    deployments:\n      - model: openai/gpt-4o-mini\n")
    code, out = run("models", "--check", "--json", "--config", str(config))
    assert code == 1
    rows = {r["route"]: r for r in json.loads(out)}
    assert rows["local"]["check"] == "ok"
    assert "OPENAI_API_KEY" in rows["remote"]["check"]


def test_traces_when_empty() -> None:
    code, out = run("traces")
    assert code == 0 and "no traces yet" in out


def test_bad_config_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "aiapp.yaml"
    config.write_text("default_route: local\nroutez: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "aiapp.cli", "complete", "hi", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert f"{config}:2" in result.stderr and "unknown key 'routez'" in result.stderr


def test_unknown_route_is_a_user_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiapp.cli", "complete", "hi", "--model", "nope"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "unknown route 'nope'" in result.stderr
