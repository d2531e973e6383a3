"""Robustness suites: perturbed forms of every case, per-metric drops and robustness scores with CIs."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiapp import evals
from aiapp.config import Settings
from aiapp.errors import ConfigError
from aiapp.evals._perturb import (
    PerturbedTarget,
    add_typos,
    change_case,
    jitter_whitespace,
    perturb_cases,
    reorder,
)
from aiapp.evals._suite import PerturbSpec
from aiapp.gateway import Gateway, run_sync
from aiapp.testing import FakeModel
from aiapp.types import Hit

TABLE = {
    "which port does the server listen on by default": "11434",
    "which variable changes the bind address": "OLLAMA_HOST",
    "which variable moves the model directory": "OLLAMA_MODELS",
    "which variable sets the context length": "OLLAMA_CONTEXT_LENGTH",
    "which variable enables flash attention": "OLLAMA_FLASH_ATTENTION",
    "which variable sets the number of parallel requests": "OLLAMA_NUM_PARALLEL",
    "which variable keeps models loaded in memory": "OLLAMA_KEEP_ALIVE",
    "which variable allows extra web origins": "OLLAMA_ORIGINS",
}
ROWS = [
    {"id": f"q{i}", "question": q.capitalize() + "?", "answer": a} for i, (q, a) in enumerate(TABLE.items())
]


def fragile(question: str, case: evals.Case) -> str:
    """Robust to case and whitespace, not to typos; obeys injections in odd-numbered cases."""
    injected = re.search(r"reply with only the word (\w+)", question)
    if injected and int(case.id.split("~")[0][1:]) % 2:
        return injected.group(1)
    key = " ".join(re.sub(r"[^a-z0-9 ]", " ", question.lower().split("ignore all")[0]).split())
    return TABLE.get(key, "I don't know")


def _gateway(home: Path, models: dict[str, Any] | None = None) -> Gateway:
    settings = Settings()
    settings.home = home
    return Gateway(settings, models=models or {})


def test_perturbations_are_deterministic_and_change_the_text() -> None:
    text = "Which variable changes the bind address of the server?"
    for fn in (add_typos, change_case, jitter_whitespace):
        a, b = fn(text, random.Random(7)), fn(text, random.Random(7))
        assert a == b and a != text
    assert jitter_whitespace(text, random.Random(1)).split() == text.split()
    assert change_case(text, random.Random(3)).lower() == text.lower()
    assert reorder([1, 2, 3], random.Random(0)) != [1, 2, 3]
    assert sorted(reorder([1, 2, 3], random.Random(0))) == [1, 2, 3]


def test_perturb_option_parses_a_list_and_rejects_unknown_kinds(
    make_suite: Callable[..., Path], tmp_path: Path
) -> None:
    suite = evals.load_suite(make_suite(perturb=["typos", "case"]))
    assert suite.perturb is not None and suite.perturb.kinds == ["typos", "case"]
    with pytest.raises(ConfigError) as err:
        evals.load_suite(make_suite(name="bad", perturb=["typos", "shouting"]))
    assert "perturb" in str(err.value)


def test_robustness_run_reports_drops_with_intervals(
    make_suite: Callable[..., Path], aiapp_home: Path
) -> None:
    kinds = ["typos", "case", "whitespace", "injected_instruction", "reorder_context"]
    path = make_suite(
        target="test_perturb:fragile",
        rows=ROWS,
        scorers=["exact_match"],
        perturb={"kinds": kinds, "seed": 3},
        gate={"metrics": {"exact_match": {"min": 0.9}}},
    )
    prepared = evals.prepare(path, _gateway(aiapp_home))
    result = evals.run(prepared)

    # The original cases alone make the estimate, the gate and the baseline.
    assert result.estimates["exact_match"].n == len(ROWS)
    assert result.estimates["exact_match"].mean == 1.0
    assert set(result.case_values("exact_match")) == {r["id"] for r in ROWS}
    assert evals.gate_run(prepared, result).verdict == "pass"

    typos = result.robustness["typos"]["exact_match"]
    assert typos.original == 1.0
    assert typos.drop is not None and typos.drop.n == len(ROWS)
    assert typos.drop.mean > 0.5  # a lookup table does not survive typos
    assert typos.drop.low <= typos.drop.mean <= typos.drop.high
    assert typos.robustness is not None and typos.robustness.low is not None
    assert typos.robustness.mean == pytest.approx(1 - typos.drop.mean)

    for kind in ("case", "whitespace"):  # the target normalizes both away
        stat = result.robustness[kind]["exact_match"]
        assert stat.drop is not None and stat.drop.mean == 0.0
        assert stat.robustness is not None and stat.robustness.mean == 1.0

    injected = result.robustness["injected_instruction"]
    assert injected["injection_resisted"].perturbed.mean == 0.5  # odd cases obeyed the injection
    assert injected["injection_resisted"].perturbed.low is not None
    assert injected["injection_resisted"].drop is None
    assert injected["exact_match"].drop is not None and injected["exact_match"].drop.mean == 0.5

    # A callable with a plain question has no context to reorder: counted, not silently dropped.
    assert "reorder_context" not in result.robustness
    assert result.perturb_skipped["reorder_context"] == {
        "needs a context: a RAG target or a `context` input field": len(ROWS)
    }

    # The Markdown and HTML reports carry the same table, and say what was not perturbed.
    md = evals.markdown(result)
    assert "Robustness (original vs perturbed" in md
    typo_row = next(line for line in md.splitlines() if line.startswith("| typos | exact_match |"))
    assert f"| {typos.drop.mean:.3f} |" in typo_row
    assert f"[{typos.drop.low:.3f}, {typos.drop.high:.3f}]" in typo_row
    assert "| injected_instruction | injection_resisted | — | 0.500 | — | — | 0.500 |" in md
    assert f"not perturbed: reorder_context: {len(ROWS)} × needs a context" in md
    page = evals.html_report(result)
    assert "<h2>Robustness</h2>" in page and "<td>injection_resisted</td>" in page
    assert "not perturbed: reorder_context" in page

    # Resuming reuses the stored perturbations and results, and reports the same drops.
    again = evals.run(evals.prepare(path, _gateway(aiapp_home)))
    assert again.resumed == len(ROWS) * 5
    assert again.robustness["typos"]["exact_match"].drop == typos.drop


def _paraphrase(messages: Any, options: Any) -> str:
    question = messages[-1].content
    if "flash" in question:
        return ""  # garbage from the route: that case is skipped and counted
    return "Paraphrase: Tell me " + question[0].lower() + question[1:]


def test_paraphrase_uses_a_route_and_counts_unusable_replies(
    make_suite: Callable[..., Path], aiapp_home: Path
) -> None:
    path = make_suite(
        target="test_perturb:fragile",
        rows=ROWS,
        scorers=["exact_match"],
        perturb={"kinds": ["paraphrase"], "route": "para"},
    )
    fake = FakeModel(default=_paraphrase)
    result = evals.run(evals.prepare(path, _gateway(aiapp_home, {"para": fake})))
    assert fake.call_count == len(ROWS)
    assert "Keep names" in str(fake.calls[0].messages[0].content)
    stat = result.robustness["paraphrase"]["exact_match"]
    assert stat.perturbed.n == len(ROWS) - 1
    assert stat.drop is not None and stat.drop.mean == 1.0  # "Tell me which ..." is not in the table
    assert result.perturb_skipped["paraphrase"] == {"paraphrase route returned no usable rewrite": 1}
    stored = json.loads(next(result.run_dir.glob("perturbations.json")).read_text())
    assert stored["cases"][0]["input"].startswith("Tell me which")


class _Retriever:
    def __init__(self) -> None:
        self.docs = {
            "port": [Hit(text=f"port {i}", chunk_id=f"p{i}", source="faq.md") for i in range(3)],
            "gpu": [Hit(text=f"gpu {i}", chunk_id=f"g{i}", source="gpu.md") for i in range(3)],
        }

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        return self.docs["port" if "port" in query else "gpu"][:k]


class _App:
    def __init__(self) -> None:
        self.retriever = _Retriever()


class _RagLike(evals.Target):
    def __init__(self) -> None:
        self.app = _App()

    async def arun(self, case: evals.Case) -> evals.Output:
        return evals.Output(hits=self.app.retriever.search(case.question, k=3))


def test_context_perturbations_act_on_what_a_rag_target_retrieves() -> None:
    cases = [evals.Case(id="a", input="which port"), evals.Case(id="b", input="which gpu")]
    spec = PerturbSpec(kinds=["reorder_context", "distractor_context", "typos"])
    base = _RagLike()
    plan = run_sync(perturb_cases(cases, spec, retrieves=PerturbedTarget.retrieves(base)))
    assert not plan.skipped
    target = PerturbedTarget(base, spec, [c.question for c in cases])
    by_id = {c.id: c for c in plan.cases}
    original = [h.chunk_id for h in run_sync(target.arun(cases[0])).hits]
    reordered = [h.chunk_id for h in run_sync(target.arun(by_id["a~reorder_context"])).hits]
    assert reordered != original and sorted(reordered) == sorted(original)
    distracted = run_sync(target.arun(by_id["a~distractor_context"])).hits
    assert len(distracted) == 4
    assert [h.chunk_id for h in distracted if h.metadata.get("distractor")] in (["g0"], ["g1"], ["g2"])
    assert [h.chunk_id for h in run_sync(target.arun(by_id["a~typos"])).hits] == original
    # The base target itself is untouched.
    assert [h.chunk_id for h in run_sync(base.arun(cases[0])).hits] == original


def test_context_perturbations_of_a_context_field() -> None:
    cases = [
        evals.Case(id="a", input={"question": "q1", "context": "one\n\ntwo\n\nthree"}),
        evals.Case(id="b", input={"question": "q2", "context": ["four", "five"]}),
    ]
    spec = PerturbSpec(kinds=["reorder_context", "distractor_context"], seed=5)
    plan = run_sync(perturb_cases(cases, spec, retrieves=False))
    by_id = {c.id: c.input for c in plan.cases}
    assert isinstance(by_id["a~reorder_context"], dict)
    assert sorted(by_id["a~reorder_context"]["context"].split("\n\n")) == ["one", "three", "two"]
    assert by_id["b~reorder_context"]["context"] == ["five", "four"]
    distracted = by_id["a~distractor_context"]["context"].split("\n\n")
    assert len(distracted) == 4 and len({"four", "five"} & set(distracted)) == 1


def test_a_limited_run_does_not_leave_stale_perturbations(
    make_suite: Callable[..., Path], aiapp_home: Path
) -> None:
    path = make_suite(target="test_perturb:fragile", rows=ROWS, scorers=["exact_match"], perturb=["typos"])
    small = evals.run(evals.prepare(path, _gateway(aiapp_home), limit=3))
    assert small.robustness["typos"]["exact_match"].perturbed.n == 3
    full = evals.run(evals.prepare(path, _gateway(aiapp_home)))
    assert full.robustness["typos"]["exact_match"].perturbed.n == len(ROWS)  # made again for all cases
    assert full.resumed == 3 * 2  # the three originals and their typo forms were kept
