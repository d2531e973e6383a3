"""Online evaluation: the eval harness's scorers over stored traces; scores stored and exported."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from aiapp.apps import RAGApp
from aiapp.config import Settings, TracingSettings
from aiapp.errors import ConfigError, InputError
from aiapp.evals import TraceFilter, score_traces
from aiapp.evals._online import in_sample
from aiapp.gateway import Gateway
from aiapp.testing import FakeModel
from aiapp.tracing import ScoreRecord, SpanRecord, Tracer
from aiapp.types import Hit, Message


class Docs:
    name = "docs"

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        return [
            Hit(
                text="Rotate a key under Settings > API keys. The old key stops working after 24 hours.",
                source="keys.md",
                chunk_id="keys.md#0",
                score=0.9,
            )
        ]


def _answer(messages: list[Message], options: Any) -> str:
    if "teapot" in messages[-1].content:
        return "Teapots are made of porcelain and brewed at dawn."  # not in the context
    return "Rotate a key under Settings > API keys [1]."


JUDGE_CALLS: list[str] = []


def _judge(messages: list[Message], options: Any) -> str:
    """A judge that grades by rule: statements about keys are supported, rubric score 4."""
    prompt = messages[-1].content
    JUDGE_CALLS.append(prompt)
    if "<statements>" in prompt:
        block = prompt.split("<statements>", 1)[1].split("</statements>", 1)[0]
        items = re.findall(r"^(\d+)\. (.*)$", block, re.M)
        verdicts = [
            {"index": int(n), "reasoning": "checked", "verdict": "key" in s.lower()} for n, s in items
        ]
        return json.dumps({"verdicts": verdicts})
    return json.dumps({"reasoning": "answers the question", "score": 4})


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.scores: list[ScoreRecord] = []

    def export(self, spans: Sequence[SpanRecord], scores: Sequence[ScoreRecord]) -> None:
        self.scores += scores

    def shutdown(self) -> None:
        pass


def _setup(tmp_path: Path, *, judge: bool = True) -> tuple[Gateway, RAGApp, Tracer, Recorder]:
    settings = Settings(home=tmp_path, tracing=TracingSettings(capture="full"))
    models = {"local": FakeModel(default=_answer)}
    if judge:
        models["judge"] = FakeModel(default=_judge, name="judge-model")
    gateway = Gateway(settings, models=models)
    recorder = Recorder()
    store = gateway.tracer.store
    assert store is not None
    tracer = Tracer(store, exporters=[recorder])
    return gateway, RAGApp(gateway=gateway, retriever=Docs()), tracer, recorder


def test_scores_are_stored_on_the_traces_and_exported(tmp_path: Path) -> None:
    gateway, app, tracer, recorder = _setup(tmp_path)
    good = app.ask("How do I rotate my API key?").trace_id
    bad = app.ask("What is a teapot?").trace_id
    direct = gateway.complete("hello there").trace_id  # no retrieval: nothing to be faithful to
    report = score_traces(gateway, ["faithfulness", "judge_rubric"], tracer=tracer)
    assert report.traces == report.sampled == 3
    store = tracer.store
    assert store is not None
    by = {t: {s["name"]: s for s in store.scores(t)} for t in (good, bad, direct)}
    assert by[good]["faithfulness"]["value"] == 1.0 and by[bad]["faithfulness"]["value"] == 0.0
    assert by[good]["judge_rubric"]["value"] == 0.75  # (4 - 1) / 4
    assert by[good]["judge_rubric"]["comment"] == "answers the question"
    assert by[direct]["faithfulness"]["value"] is None  # unscored, with the reason: never 0
    assert "no retrieved context" in by[direct]["faithfulness"]["comment"]
    assert all(s["source"] == "online" for row in by.values() for s in row.values())
    faithfulness = next(s for s in report.scorers if s.scorer == "faithfulness")
    assert (faithfulness.scored, faithfulness.unscored, faithfulness.mean) == (2, 1, 0.5)
    assert len(faithfulness.reasons) == 1
    exported = {(s.trace_id, s.name): s.value for s in recorder.scores}
    assert exported == {
        (good, "faithfulness"): 1.0,
        (bad, "faithfulness"): 0.0,
        (good, "judge_rubric"): 0.75,
        (bad, "judge_rubric"): 0.75,
        (direct, "judge_rubric"): 0.75,
    }  # unscored verdicts are not exported
    assert JUDGE_CALLS

    # The judge's own calls are traces too, but never scored as if they were user traffic.
    again = score_traces(gateway, ["faithfulness"], tracer=tracer)
    assert again.skipped.get("an eval judge's call", 0) >= 1
    assert again.already_scored == 3 and again.scorers[0].scored == 0  # scored before: skipped
    rescored = score_traces(gateway, ["faithfulness"], tracer=tracer, rescore=True)
    assert rescored.scorers[0].scored == 2


def test_without_a_judge_route_judges_are_unscored_and_faithfulness_falls_back(tmp_path: Path) -> None:
    gateway, app, tracer, _ = _setup(tmp_path, judge=False)
    trace_id = app.ask("How do I rotate my API key?").trace_id
    report = score_traces(gateway, ["faithfulness", "judge_rubric"], tracer=tracer)
    store = tracer.store
    assert store is not None
    scores = {s["name"]: s for s in store.scores(trace_id)}
    assert scores["faithfulness"]["value"] == 1.0 and "lexical fallback" in scores["faithfulness"]["comment"]
    assert scores["judge_rubric"]["value"] is None
    assert "no judge model configured" in scores["judge_rubric"]["comment"]
    rubric = next(s for s in report.scorers if s.scorer == "judge_rubric")
    assert rubric.scored == 0 and rubric.unscored == 1 and rubric.mean is None


def test_the_sample_is_stable_and_filters_apply(tmp_path: Path) -> None:
    gateway, app, tracer, _ = _setup(tmp_path, judge=False)
    ids = [app.ask(f"How do I rotate API key number {i}?").trace_id for i in range(12)]
    expected = [t for t in ids if in_sample(t, 0.5, seed=3)]
    assert 0 < len(expected) < len(ids)
    report = score_traces(gateway, ["faithfulness"], tracer=tracer, sample=0.5, seed=3)
    assert report.sampled == len(expected)
    store = tracer.store
    assert store is not None
    assert {t for t in ids if store.scores(t)} == set(expected)
    assert (
        score_traces(gateway, ["faithfulness"], tracer=tracer, filter=TraceFilter(route="other")).traces == 0
    )


def test_bad_arguments(tmp_path: Path) -> None:
    gateway, _, tracer, _ = _setup(tmp_path, judge=False)
    with pytest.raises(InputError, match="--sample must be in"):
        score_traces(gateway, ["faithfulness"], tracer=tracer, sample=0)
    with pytest.raises(ConfigError, match="unknown scorer 'nope'"):
        score_traces(gateway, ["nope"], tracer=tracer)
    with pytest.raises(ConfigError, match="tracing is disabled"):
        score_traces(gateway, ["faithfulness"], tracer=Tracer(None))
