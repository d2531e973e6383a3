"""``aiapp traces feedback | export | score | prune`` in-process, and the exit code of a bad trace id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aiapp.cli import app
from aiapp.errors import InputError
from aiapp.tracing import SpanRecord, TraceStore

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
PASSAGE = "Rotate a key under Settings > API keys. The old key stops working after 24 hours."


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _rag_trace(store: TraceStore, trace_id: str, question: str, answer: str, *, age_s: float = 0.0) -> None:
    """The spans a RAG app writes: the app request, its retrieval and its model call."""
    started = time.time() - age_s
    prompt = f"<context>\n[1] keys.md\n{PASSAGE}\n</context>\n\n<question>{question}</question>"
    spans = [
        SpanRecord(span_id=trace_id, trace_id=trace_id, kind="app", name="rag", route="local",
                   prompt_ref="support_answer@v2", input=question, output=answer, started_at=started),
        SpanRecord(span_id=f"{trace_id}r", trace_id=trace_id, parent_id=trace_id, kind="retrieval", name="docs",
                   input=question, started_at=started + 0.01,
                   attributes={"hits": [{"source": "keys.md", "chunk_id": "keys.md#0", "score": 0.9}]}),
        SpanRecord(span_id=f"{trace_id}l", trace_id=trace_id, parent_id=trace_id, kind="llm", name="local",
                   route="local", started_at=started + 0.02, output=answer,
                   input=[{"role": "system", "content": "Answer from the sources."},
                          {"role": "user", "content": prompt}]),
    ]  # fmt: skip
    for span in spans:
        store.record(span)


@pytest.fixture
def store(aiapp_home: Path) -> TraceStore:
    store = TraceStore(aiapp_home / "traces.db")
    _rag_trace(
        store, "aaaa000000000001", "How do I rotate my API key?", "Rotate it under Settings > API keys [1]."
    )
    _rag_trace(store, "bbbb000000000002", "How can I rotate my API key?", "Ask someone.")
    _rag_trace(store, "cccc000000000003", "Old question about keys?", "Settings [1].", age_s=40 * 86400)
    store.flush()
    return store


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_feedback_thumbs_and_ratings(store: TraceStore) -> None:
    code, out = run("traces", "feedback", "aaaa0000", "+1", "clear and correct")
    assert code == 0 and "feedback +1 stored on trace aaaa000000000001" in out
    code, out = run("traces", "feedback", "bbbb000000000002", "-1", "wrong", "--user", "u9")
    assert code == 0, out
    code, _ = run("traces", "feedback", "bbbb000000000002", "0.3")
    assert code == 0
    assert [(f["score"], f["comment"], f["user"]) for f in store.feedback("bbbb000000000002")] == [
        (-1.0, "wrong", "u9"),
        (0.3, None, None),
    ]
    code, out = run("traces", "show", "aaaa0000")
    assert "feedback: +1 clear and correct" in out
    with pytest.raises(InputError, match="no trace with id 'ffff0000'"):
        run("traces", "feedback", "ffff0000", "+1")
    with pytest.raises(InputError, match="feedback score must be"):
        run("traces", "feedback", "aaaa0000", "5")


def test_an_unknown_trace_exits_2_with_one_clear_line(store: TraceStore, aiapp_home: Path) -> None:
    env = {**os.environ, "AIAPP_HOME": str(aiapp_home)}
    done = subprocess.run(
        [sys.executable, "-m", "aiapp.cli", "traces", "feedback", "deadbeef", "-1", "bad"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: no trace with id 'deadbeef'")


def test_export_with_filters(store: TraceStore, tmp_path: Path) -> None:
    store.add_feedback("aaaa000000000001", 1)
    store.add_feedback("bbbb000000000002", -1)
    out = tmp_path / "eval.jsonl"
    code, text = run("traces", "export", "--as", "eval", "-o", str(out), "--no-dedup", "--since", "7d")
    assert code == 0 and f"wrote 2 eval row(s) to {out}" in text
    assert {r["trace_id"] for r in _lines(out)} == {"aaaa000000000001", "bbbb000000000002"}
    code, _ = run(
        "traces", "export", "--as", "eval", "-o", str(out), "--no-dedup", "--filter", "feedback=negative"
    )
    assert [r["trace_id"] for r in _lines(out)] == ["bbbb000000000002"]
    code, _ = run("traces", "export", "--as", "sft", "-o", str(out), "--no-dedup", "--feedback", "positive")
    [row] = _lines(out)
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    code, text = run("traces", "export", "--as", "preference", "-o", str(out), "--json")  # dedup: MiniLM
    report = json.loads(text)
    assert report["rows"] == 1 and report["collapsed"] >= 1
    [pair] = _lines(out)
    assert (
        pair["chosen"][0]["content"].startswith("Rotate it")
        and pair["rejected"][0]["content"] == "Ask someone."
    )
    with pytest.raises(InputError, match="--as must be one of eval, sft, preference"):
        run("traces", "export", "--as", "csv", "-o", str(out))


def test_score_stores_online_scores(store: TraceStore) -> None:
    code, out = run(
        "traces", "score", "--scorers", "faithfulness,judge_rubric", "--since", "1d", "--route", "local"
    )
    assert code == 0, out
    assert "scored 2 of 2 trace(s)" in out
    assert "judge_rubric: 0 scored, mean -; 2 unscored" in out  # the shipped judge needs an API key
    scores = {s["name"]: s for s in store.scores("aaaa000000000001")}
    assert scores["faithfulness"]["value"] == 1.0
    assert scores["judge_rubric"]["value"] is None and scores["judge_rubric"]["comment"]
    assert store.scores("cccc000000000003") == []  # older than --since


def test_prune(store: TraceStore) -> None:
    store.add_feedback("cccc000000000003", 1)
    store.add_score("cccc000000000003", "faithfulness", 0.5)
    code, out = run("traces", "prune", "--older-than", "30d", "--dry-run")
    assert (
        code == 0
        and "would delete 1 trace(s) older than 30d: 3 span(s), 1 feedback row(s), 1 score(s)" in out
    )
    assert len(store.trace("cccc000000000003")) == 3
    code, out = run("traces", "prune", "--older-than", "30d", "--json")
    assert json.loads(out) == {"traces": 1, "spans": 3, "feedback": 1, "scores": 1, "dry_run": False}
    assert store.trace("cccc000000000003") == [] and len(store.trace("aaaa000000000001")) == 3
    with pytest.raises(InputError, match="cannot read 'a month' as a duration"):
        run("traces", "prune", "--older-than", "a month")


def test_exported_cases_run_through_aiapp_eval(store: TraceStore, tmp_path: Path) -> None:
    store.add_feedback("aaaa000000000001", 1)
    data = tmp_path / "from_traces.jsonl"
    code, _ = run("traces", "export", "--as", "eval", "-o", str(data), "--no-dedup", "--since", "7d")
    assert code == 0
    suite = tmp_path / "from_traces.yaml"
    suite.write_text(
        "name: from_traces\n"
        "dataset: {path: from_traces.jsonl}\n"
        "target: {callable: 'test_traces_flywheel:replay'}\n"
        "scorers: [token_f1, faithfulness]\n"
    )
    code, out = run("eval", str(suite), "--json", "--report-dir", str(tmp_path / "reports"))
    assert code == 0, out
    summary = json.loads(out[out.index("{") :])
    summary = summary[0] if isinstance(summary, list) else summary
    assert summary["cases"] == 2
    assert summary["metrics"]["token_f1"]["n"] == 1  # the approved answer is the only reference
    assert summary["metrics"]["token_f1"]["unscored"] == 1
    assert summary["metrics"]["faithfulness"]["n"] == 2  # the traced context came along


def replay(question: str, case: Any) -> dict[str, Any]:
    """A target that answers as the traced system did, from the traced context."""
    hits = [{"text": c["text"], "source": c["source"]} for c in case.metadata["context"] if c["text"]]
    return {"text": case.metadata["traced_answer"], "hits": hits}
