"""Helpers for eval tests: write suites and datasets into a temp folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROWS = [
    {"id": "q1", "question": "2+2", "answer": "4", "source": "math.md"},
    {"id": "q2", "question": "capital of France", "answer": "Paris", "source": "geo.md"},
    {"id": "q3", "question": "color of the sky", "answer": "blue", "source": "sky.md"},
    {"id": "q4", "question": "meaning of life", "answer": "42", "source": "life.md"},
]


@pytest.fixture
def make_suite(tmp_path: Path) -> Callable[..., Path]:
    """Write a dataset and a suite file; returns the suite path."""

    def make(
        target: str = "fake_targets:oracle", rows: list[dict[str, Any]] | None = None, **extra: Any
    ) -> Path:
        data = tmp_path / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in (rows or ROWS)))
        suite: dict[str, Any] = {
            "name": extra.pop("name", "demo"),
            "dataset": {"path": "data.jsonl"},
            "target": {"callable": target},
            "scorers": ["exact_match", {"token_f1": {"threshold": 0.5}}],
            "concurrency": 2,
        }
        suite.update(extra)
        path = tmp_path / f"{suite['name']}.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        return path

    return make
