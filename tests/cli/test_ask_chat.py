"""`aiapp ask` and `aiapp chat` end to end: a real index (Qdrant Edge) of demo-corpus files, embedded
through the stub server, answered offline by local/extractive, traced, with feedback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiapp.cli import app
from aiapp.testing import StubServer

REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()
QUESTION = "How do I make the server listen on all interfaces?"


@pytest.fixture
def project(tmp_path: Path, stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder: two files of the demo corpus, the shipped prompts, a config (stub embeddings)."""
    docs = tmp_path / "corpora" / "ollama" / "docs"
    docs.mkdir(parents=True)
    for name in ("faq.mdx", "gpu.mdx"):
        shutil.copy(REPO / "corpora" / "ollama" / "docs" / name, docs / name)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "aiapp.yaml").write_text(
        "retrieval:\n"
        "  corpora_dir: corpora\n"
        "  embedder: openai/stub-embed\n"
        f"  embedder_api_base: {stub.base_url}\n"
        "prompts:\n"
        f"  dir: {REPO / 'prompts'}\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def test_ask_json_answers_with_citations_into_the_corpus_and_a_traced_prompt(project: Path) -> None:
    code, out = run("ask", QUESTION, "--json")
    assert code == 0, out
    answer = json.loads(out[out.index("{") :])  # after the one-time "indexing" note
    assert answer["text"] and answer["text"] != "No context was provided, so I cannot answer from documents."
    assert answer["citations"], answer["text"]
    assert all(c["source"].startswith("corpora/ollama/docs/") for c in answer["citations"])
    assert all(c["chunk_id"] for c in answer["citations"])
    assert answer["prompt"] == "support_answer@v2" and answer["route"] == "local"
    assert answer["model"] == "local/extractive" and answer["cost_usd"] == 0.0

    code, out = run("traces", "show", answer["trace_id"], "--json")
    assert code == 0
    spans = {s["kind"]: s for s in json.loads(out)}
    assert set(spans) == {"app", "retrieval", "llm"}
    for kind in ("app", "llm"):
        assert spans[kind]["prompt_ref"] == "support_answer@v2"
        assert spans[kind]["prompt_hash"] == answer["prompt_hash"]
    assert spans["retrieval"]["name"] == "ollama" and spans["retrieval"]["attributes"]["corpus_version"]
    code, out = run("traces", "show", answer["trace_id"])
    assert f"prompt: support_answer@v2 ({answer['prompt_hash']})" in out


def test_ask_prints_the_answer_sources_and_trace(project: Path) -> None:
    code, out = run("ask", QUESTION, "--prompt", "support_answer@baseline", "--k", "3")
    assert code == 0
    assert "sources:" in out and "corpora/ollama/docs/" in out
    assert "trace: " in out and "prompt: support_answer@v1 (" in out and "route: local" in out
    code, out = run("ask", QUESTION, "--stream")
    assert code == 0 and "sources:" in out and "trace: " in out


def test_chat_repl_keeps_history_shows_sources_and_stores_feedback(project: Path) -> None:
    stdin = "\n".join(
        [
            "/feedback +1",  # nothing to score yet
            QUESTION,
            "/sources",
            '/feedback +1 "clear and cited"',
            "/feedback great",
            "/bogus",
            "What GPUs are supported?",
            "/exit",
            "never read",
        ]
    )
    code, out = run("chat", stdin=stdin)
    assert code == 0, out
    assert "no answer to give feedback on yet" in out
    assert out.count("bot> ") == 2
    assert "sources:" in out and "[1] corpora/ollama/docs/" in out
    assert "feedback +1 stored with trace " in out
    assert "usage: /feedback +1" in out and "unknown command /bogus" in out
    trace_id = out.split("feedback +1 stored with trace ")[1].split()[0]
    code, traces = run("traces", "show", trace_id)
    assert "feedback: +1 clear and cited" in traces


def test_chat_ends_at_end_of_input(project: Path) -> None:
    code, out = run("chat", "--window", "2", stdin=f"{QUESTION}\n")
    assert code == 0 and out.count("bot> ") == 1 and out.rstrip().endswith("you>")


def test_an_unknown_corpus_is_a_clear_error(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiapp.cli", "ask", QUESTION, "--corpus", "nope"],
        capture_output=True,
        text=True,
        cwd=project,
    )
    assert result.returncode == 2
    assert "index 'nope' is empty: run `aiapp index nope` first" in result.stderr
