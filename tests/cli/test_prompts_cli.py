"""`aiapp prompts list | show | check | diff | render`, in-process through Typer's runner."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiapp.cli import app

REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()
SHIPPED = str(REPO / "prompts")


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", target)
    return target


def test_check_passes_on_the_shipped_prompts() -> None:
    code, out = run("prompts", "check", "--dir", SHIPPED)
    assert code == 0, out
    assert re.match(r"ok: \d+ prompts, \d+ versions, \d+ labels in ", out)  # other prompts may ship too


def test_check_uses_the_configured_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "aiapp.yaml"
    config.write_text(f"prompts:\n  dir: {SHIPPED}\n")
    code, out = run("prompts", "check", "--config", str(config))
    assert code == 0 and "ok:" in out
    monkeypatch.chdir(REPO)  # the default, prompts/ under the working directory
    code, out = run("prompts", "list", "--json")
    assert code == 0 and {r["ref"] for r in json.loads(out)} >= {"support_answer@v1", "support_answer@v2"}


BROKEN = {
    "unknown key": ("support_answer/v1.yaml", "description:", "descripton:", "unknown key 'descripton'"),
    "bad YAML": ("support_answer/v1.yaml", "  temperature: 0.2", "  temperature: 0.2: x", "invalid YAML"),
    "undefined variable": (
        "support_answer/v2.yaml",
        "<question>{{ question }}</question>",
        "<question>{{ user_question }}</question>",
        "undefined template variable 'user_question'",
    ),
    "missing version": (
        "labels.yaml",
        "- support_answer@v1",
        "- support_answer@v7",
        "support_answer@v7, which does not exist",
    ),
    "sandbox escape": (
        "support_answer/v1.yaml",
        "<question>{{ question }}</question>",
        "<question>{{ ''.__class__.__mro__ }}</question>",
        "access to '__class__' is refused",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_exits_non_zero_naming_file_line_and_problem(prompts: Path, case: str) -> None:
    rel, old, new, message = BROKEN[case]
    file = prompts / rel
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    line = next(i for i, row in enumerate(file.read_text().splitlines(), 1) if new in row)
    code, out = run("prompts", "check", "--dir", str(prompts))
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith(f"{file}:{line}: "), out
    assert message in first
    assert "problem(s) in" in out


def test_check_json(prompts: Path) -> None:
    (prompts / "labels.yaml").write_text("production: [support_answer@v9]\n")
    code, out = run("prompts", "check", "--dir", str(prompts), "--json")
    assert code == 1
    problems = json.loads(out.split("\n1 problem(s)")[0])
    assert problems == [
        {
            "path": str(prompts / "labels.yaml"),
            "line": 1,
            "message": "label 'production' points at support_answer@v9, which does not exist (versions: v1, v2, v3)",
        }
    ]


def test_list_shows_labels_and_hashes() -> None:
    code, out = run("prompts", "list", "--dir", SHIPPED, "--json")
    assert code == 0
    rows = {r["ref"]: r for r in json.loads(out)}
    assert rows["support_answer@v2"]["labels"] == ["production", "staging"]
    assert "latest" in rows["support_answer@v3"]["labels"]
    assert rows["support_answer@v1"]["labels"] == ["baseline"]
    assert len(rows["ticket_triage@v1"]["hash"]) == 16
    code, out = run("prompts", "list", "--dir", SHIPPED)
    assert code == 0 and "support_answer@v2" in out and "production" in out


def test_show_by_label_and_as_json() -> None:
    code, out = run("prompts", "show", "support_answer@production", "--dir", SHIPPED)
    assert code == 0
    assert out.startswith("support_answer@v2  hash ") and "labels: production, staging" in out
    assert "name: support_answer\nversion: 2" in out
    code, out = run("prompts", "show", "ticket_triage", "--dir", SHIPPED, "--json")
    data = json.loads(out)
    assert data["ref"] == "ticket_triage@v1" and data["output"]["schema"]["required"] == [
        "category",
        "urgency",
        "summary",
    ]


def test_diff_between_versions() -> None:
    code, out = run(
        "prompts", "diff", "support_answer@baseline", "support_answer@production", "--dir", SHIPPED
    )
    assert code == 0
    assert "--- support_answer@v1" in out and "+++ support_answer@v2" in out
    assert "-version: 1" in out and "+version: 2" in out
    assert "content hash:" in out and "(different)" in out
    code, out = run("prompts", "diff", "support_answer@v2", "support_answer@staging", "--dir", SHIPPED)
    assert code == 0 and "identical" in out


def test_render_with_typed_variables() -> None:
    code, out = run(
        "prompts",
        "render",
        "ticket_triage",
        "--dir",
        SHIPPED,
        "--var",
        "ticket=My GPU is idle",
        "--var",
        'categories=["gpu", "other"]',
        "--json",
    )
    assert code == 0, out
    messages = json.loads(out)["messages"]
    assert "one of gpu, other" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "My GPU is idle"}


def test_render_reads_a_variable_from_a_file(tmp_path: Path) -> None:
    context = tmp_path / "context.txt"
    context.write_text("[1] faq.md\nSet OLLAMA_HOST.")
    code, out = run(
        "prompts",
        "render",
        "support_answer",
        "--dir",
        SHIPPED,
        "-v",
        "question=How?",
        "-v",
        f"context=@{context}",
    )
    assert code == 0
    assert "[system]" in out and "<context>\n[1] faq.md\nSet OLLAMA_HOST.\n</context>" in out


def test_user_errors_exit_2_with_one_line() -> None:
    for args in (
        ["prompts", "show", "support_answer@v9", "--dir", SHIPPED],
        ["prompts", "render", "support_answer", "--dir", SHIPPED, "--var", "question=hi"],
        [
            "prompts",
            "render",
            "ticket_triage",
            "--dir",
            SHIPPED,
            "--var",
            "ticket=x",
            "--var",
            "categories=gpu",
        ],
        ["prompts", "list", "--dir", str(REPO / "no-such-dir")],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "aiapp.cli", *args], capture_output=True, text=True, cwd=REPO
        )
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert (
        "no version v9 (versions: v1, v2, v3)"
        in subprocess.run(
            [sys.executable, "-m", "aiapp.cli", "prompts", "show", "support_answer@v9", "--dir", SHIPPED],
            capture_output=True,
            text=True,
        ).stderr
    )
