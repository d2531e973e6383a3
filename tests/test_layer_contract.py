"""The dependency rule of DESIGN.md is a contract `make test` checks (import-linter), not a comment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (the dev extra)")


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = _lint(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(
        REPO / "src" / "aiapp", tmp_path / "aiapp", ignore=shutil.ignore_patterns("__pycache__", "data")
    )
    (tmp_path / "aiapp" / "gateway" / "_shortcut.py").write_text(
        '"""A deliberate violation: the gateway reaching up into the eval harness."""\n\nimport aiapp.evals\n'
    )
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "aiapp.gateway._shortcut -> aiapp.evals" in result.stdout
