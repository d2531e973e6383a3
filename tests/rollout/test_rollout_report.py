"""`aiapp rollout report` on seeded traffic: primary-vs-shadow pairs and same-question arm pairs,
scored by the pairwise judge (a FakeModel that prefers cited answers) and a per-output scorer."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from rollout_helpers import make_prompts
from typer.testing import CliRunner

from aiapp.config import Settings
from aiapp.evals import build_scorer, collect_pairs, rollout_report, write_pairs_dataset
from aiapp.gateway import Gateway
from aiapp.prompts import PromptRegistry
from aiapp.rollout import Rollout
from aiapp.testing import FakeModel
from aiapp.types import CallOptions, Message


def cited_judge(messages: Sequence[Message], options: CallOptions) -> str:
    """Prefers the response with a citation; a tie when both or neither have one."""
    text = messages[-1].content
    first = re.search(r"<response_1>\n(.*?)\n</response_1>", text, re.S)
    second = re.search(r"<response_2>\n(.*?)\n</response_2>", text, re.S)
    assert first and second
    one, two = "[1]" in first.group(1), "[1]" in second.group(1)
    winner = "tie" if one == two else ("1" if one else "2")
    return json.dumps({"reasoning": "citations matter", "winner": winner})


SHADOW_LABELS = """\
production:
  answer:
    split: {v1: 100}
    shadow: {prompt: answer@v2, route: cand}
"""


def seeded_shadow(tmp_path: Path, candidate: str) -> Gateway:
    prompts = make_prompts(tmp_path / "prompts", SHADOW_LABELS)
    gw = Gateway(
        Settings(prompts={"dir": prompts}),
        models={
            "main": FakeModel(name="test/main", default="a vague answer"),
            "cand": FakeModel(name="test/cand", default=candidate),
            "judge": FakeModel(name="test/judge", default=cited_judge),
        },
    )
    rollout = Rollout(gw, PromptRegistry.from_settings(gw.settings))

    async def drive() -> None:
        for i in range(12):
            await rollout.acomplete("answer", {"question": f"question {i}"}, key=f"u{i}", model="main")
        await rollout.drain()

    from aiapp.gateway import run_sync

    run_sync(drive())
    return gw


def test_a_better_shadow_is_reported_better_and_written_as_a_dataset(tmp_path: Path) -> None:
    gw = seeded_shadow(tmp_path, candidate="the exact flag is --host [1]")
    store = gw.tracer.store
    assert store is not None
    report = rollout_report(store, gateway=gw, label="production")
    (comparison,) = report.comparisons
    assert comparison.kind == "shadow" and comparison.experiment == "production/answer"
    assert comparison.a == "primary v1" and comparison.b == "shadow v2" and len(comparison.pairs) == 12
    assert comparison.pairs[0].question.startswith("question ")  # the variables recorded on the app span
    (metric,) = comparison.metrics
    assert metric.metric == "judge_pairwise" and metric.n == 12 and metric.mean == 1.0
    assert comparison.verdict == "better"
    rows = write_pairs_dataset(report, tmp_path / "pairs.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert rows == 12 and lines[0]["answer"] == "a vague answer" and "[1]" in lines[0]["candidate"]


def test_an_equal_shadow_is_inconclusive(tmp_path: Path) -> None:
    gw = seeded_shadow(tmp_path, candidate="another vague answer")
    assert gw.tracer.store is not None
    report = rollout_report(gw.tracer.store, gateway=gw)
    assert report.comparisons[0].verdict == "inconclusive"
    assert report.comparisons[0].metrics[0].reason.startswith("the 95% interval includes 0")


ARM_LABELS = """\
production:
  answer: {v1: 50, v2: 50}
"""


def test_a_worse_arm_on_the_same_questions_is_reported_worse(tmp_path: Path) -> None:
    prompts = make_prompts(tmp_path / "prompts", ARM_LABELS, models={1: "good", 2: "bad"})
    gw = Gateway(
        Settings(prompts={"dir": prompts}),
        models={
            "good": FakeModel(name="test/good", default="cited [1] answer"),
            "bad": FakeModel(name="test/bad", default="uncited answer"),
            "judge": FakeModel(name="test/judge", default=cited_judge),
        },
    )
    rollout = Rollout(gw, PromptRegistry.from_settings(gw.settings))
    users = {
        arm: [f"u{i}" for i in range(200) if rollout.assign("answer", key=f"u{i}").arm == arm]
        for arm in ("v1", "v2")
    }
    for i in range(10):  # the same question asked by a user of each arm
        for arm in ("v1", "v2"):
            rollout.complete("answer", {"question": f"question {i}"}, key=users[arm][i])
    rollout.complete("answer", {"question": "asked once"}, key=users["v1"][50])  # no pair: skipped
    assert gw.tracer.store is not None
    pairs = collect_pairs(gw.tracer.store)
    assert [(c.kind, len(c.pairs)) for c in pairs] == [("arms", 10)]
    contains = build_scorer("contains", {"value": "[1]"})
    report = rollout_report(
        gw.tracer.store, gateway=gw, scorers=[build_scorer("judge_pairwise", gateway=gw), contains]
    )
    (comparison,) = report.comparisons
    assert comparison.a == "v1" and comparison.b == "v2"  # v1 has more calls: the control
    assert [m.verdict for m in comparison.metrics] == ["worse", "worse"]
    assert comparison.verdict == "worse" and comparison.live["v2"].calls == 10


def test_the_cli_report_exits_1_on_worse_and_prints_json(tmp_path: Path, monkeypatch: object) -> None:
    gw = seeded_shadow(tmp_path, candidate="the exact flag is --host [1]")
    gw.close()
    from aiapp.cli._app import app

    result = CliRunner().invoke(app, ["rollout", "report", "--since", "1h", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # The CLI's gateway has no `judge` route: every pair unscored, with the reason, and inconclusive.
    metric = data["comparisons"][0]["metrics"][0]
    assert (
        metric["verdict"] == "inconclusive"
        and metric["unscored"] == 12
        and "no judge model" in metric["reason"]
    )
