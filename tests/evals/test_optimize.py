"""Prompt optimisation on a stub suite where one few-shot example is known to help."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiapp.config import PromptSettings, Settings
from aiapp.errors import InputError
from aiapp.evals import load_cases, load_suite
from aiapp.evals._optimize import optimize, split_cases
from aiapp.gateway import Gateway
from aiapp.prompts import PromptRegistry
from aiapp.testing import FakeModel
from aiapp.types import Completion, Usage

PROMPT = """\
name: capital
version: 1
description: Name the code of a country.
model: stub
variables:
  question: {type: string, description: The question.}
messages:
  - role: system
    content: Answer with the code only.
  - role: user
    content: "{{ question }}"
"""
LABELS = "production:\n  - capital@v1\n"
ROWS = [
    {"id": f"c{i:02d}", "question": f"What is the code of country {i}?", "answer": f"CODE-{i}"}
    for i in range(20)
]
#: Set per test: the cases the model answers unaided, and the example that teaches it the rest.
STATE: dict[str, Any] = {"easy": set(), "key": None, "cost": 0.0}


def _stub(messages: Any, options: Any) -> Completion:
    """Right on easy questions; right on every question once the key case is among the examples."""
    question = str(messages[-1].content)
    number = int(question.rsplit(" ", 1)[1].rstrip("?"))
    shots = [str(m.content) for m in messages[1:-1] if m.role == "user"]
    key_question = f"What is the code of country {int(STATE['key'][1:])}?" if STATE["key"] else None
    knows = f"c{number:02d}" in STATE["easy"] or (key_question is not None and key_question in shots)
    text = f"CODE-{number}" if knows else "I am not sure."
    return Completion(text=text, usage=Usage(input_tokens=10, output_tokens=2, cost_usd=STATE["cost"]))


def _proposer_replies() -> list[Any]:
    return ["this is not json", json.dumps({"instructions": ["Reply with the code, nothing else."]})]


@pytest.fixture
def project(tmp_path: Path, aiapp_home: Path) -> tuple[Path, Gateway, FakeModel]:
    prompts = tmp_path / "prompts"
    (prompts / "capital").mkdir(parents=True)
    (prompts / "capital" / "v1.yaml").write_text(PROMPT)
    (prompts / "labels.yaml").write_text(LABELS)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    suite = tmp_path / "capital.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "dataset": {"path": "data.jsonl"},
                "target": {"kind": "prompt", "prompt": "capital@production", "route": "stub"},
                "scorers": ["exact_match"],
                "gate": {"metrics": {"exact_match": {"min": 0.5}}},
            }
        )
    )
    train, _ = split_cases(load_cases(load_suite(suite).dataset, base_dir=tmp_path), holdout=0.4, seed=0)
    STATE.update(easy={c.id for c in train[:4]}, key=train[2].id, cost=0.0)
    settings = Settings(prompts=PromptSettings(dir=prompts))
    settings.home = aiapp_home
    proposer = FakeModel(_proposer_replies())
    gw = Gateway(settings, models={"stub": FakeModel(default=_stub), "proposer": proposer})
    return suite, gw, proposer


def test_finds_the_helpful_example_and_writes_a_new_version(project: tuple[Path, Gateway, FakeModel]) -> None:
    suite, gw, proposer = project
    prompts_dir = Path(gw.settings.prompts.dir)
    labels_before = (prompts_dir / "labels.yaml").read_text()
    result = optimize("capital", suite, gw, trials=20, variants=1, proposer="proposer", seed=0)

    assert result.baseline_train == pytest.approx(4 / 12)
    assert set(result.demos) == STATE["easy"]  # bootstrapped from the cases the prompt got right
    assert result.instructions == ["Reply with the code, nothing else."]  # garbage re-asked, then parsed
    assert proposer.call_count == 2 and result.problems == {"proposer reply is not the schema": 1}
    assert 1 <= len(result.trials) <= 20
    assert result.winner is not None and STATE["key"] in result.winner.candidate.examples
    assert result.winner.mean == 1.0
    assert result.heldout_baseline == 0.0 and result.heldout_winner == 1.0
    assert result.difference is not None and result.difference.low > 0 and result.difference.n == 8
    assert result.confirmed

    assert result.written == prompts_dir / "capital" / "v2.yaml"
    text = result.written.read_text()
    assert text.startswith("# v2: written by `aiapp prompts optimize capital`")
    assert "suite capital, metric exact_match" in text and "Budget spent: $0.0000" in text
    assert "Held-out: 0.000 → 1.000" in text
    written = PromptRegistry(prompts_dir).get("capital@v2")
    key_number = int(STATE["key"][1:])
    assert {"question": f"What is the code of country {key_number}?"} in [e.vars for e in written.examples]
    # Production is never relabelled: the reviewer promotes v2 when they agree.
    assert (prompts_dir / "labels.yaml").read_text() == labels_before
    assert PromptRegistry(prompts_dir).get("capital", label="production").version == 1
    assert not list(prompts_dir.glob("capital/v1[0-9][0-9].yaml"))  # candidates stayed in the scratch copy


def test_nothing_is_written_when_no_candidate_helps(project: tuple[Path, Gateway, FakeModel]) -> None:
    suite, gw, _ = project
    STATE["key"] = None  # no example teaches the model anything
    result = optimize("capital", suite, gw, trials=6, variants=0, seed=0)
    assert not result.confirmed and result.written is None
    assert result.stopped == "no candidate beat the current prompt on the train split"
    assert not (Path(gw.settings.prompts.dir) / "capital" / "v2.yaml").exists()


def test_the_budget_stops_the_search(project: tuple[Path, Gateway, FakeModel]) -> None:
    suite, gw, _ = project
    STATE["cost"] = 0.01  # per call: 12 train calls per trial, 16 to confirm on 8 held-out cases
    result = optimize("capital", suite, gw, budget_usd=0.5, trials=20, variants=0, seed=0, write=False)
    assert result.stopped.startswith("budget: $")
    assert len(result.trials) == 1
    assert result.spent_usd <= 0.5 + 1e-9
    assert result.written is None


def test_the_suite_must_use_the_prompt(project: tuple[Path, Gateway, FakeModel]) -> None:
    suite, gw, _ = project
    with pytest.raises(InputError, match="evaluates prompt 'capital@production', not 'other'"):
        optimize("other", suite, gw)
