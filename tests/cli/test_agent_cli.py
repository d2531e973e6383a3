"""``aiapp agent`` end to end through Typer's runner, against the local stub server; and its trace."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiapp.cli import app
from aiapp.testing import StubServer
from aiapp.types import ToolCall

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
DEMO_DOCS = [REPO / "corpora" / "ollama" / "docs", REPO.parent / "shared" / "data" / "docs_ollama" / "docs"]


def config_for(stub: StubServer, tmp_path: Path) -> str:
    path = tmp_path / "aiapp.yaml"
    path.write_text(
        "default_route: stub\n"
        "routes:\n"
        "  stub:\n"
        "    deployments:\n"
        f"      - model: vllm/stub-model\n        api_base: {stub.base_url}\n        timeout_s: 60\n"
        "retrieval:\n"
        f"  embedder: vllm/stub-embed\n  embedder_api_base: {stub.base_url}\n"
    )
    return str(path)


def invoke(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_agent_runs_tools_and_the_trace_shows_the_timeline(stub: StubServer, tmp_path: Path) -> None:
    stub.queue_replies(
        [ToolCall(id="call_1", name="calculator", arguments='{"expression": "6 * 7"}')], "It is 42."
    )
    code, out = invoke("agent", "What is 6 times 7?", "--config", config_for(stub, tmp_path))
    assert code == 0, out
    assert 'step 1: calculator {"expression": "6 * 7"} → 42' in out
    assert "It is 42." in out and "stop: final_answer" in out
    trace_id = out.split("trace: ", 1)[1].split()[0]

    code, shown = invoke("traces", "show", trace_id, "--config", config_for(stub, tmp_path))
    assert code == 0
    lines = shown.splitlines()
    agent_line = next(line for line in lines if "[agent] cli-agent" in line)
    tool_line = next(line for line in lines if "[tool] calculator" in line)
    indent = tool_line.index("[") - agent_line.index("[")
    assert indent == 2  # the tool call nests under the run
    assert any('input: {"expression": "6 * 7"}' in line for line in lines)
    assert any("output: 42" in line for line in lines)
    assert any("stop_reason=final_answer" in line for line in lines)


def test_agent_prompts_for_approval_and_honours_a_no(stub: StubServer, tmp_path: Path) -> None:
    stub.queue_replies(
        [ToolCall(id="call_1", name="calculator", arguments='{"expression": "1 + 1"}')], "I was not allowed."
    )
    code, out = invoke("agent", "1+1?", "--approve", "--config", config_for(stub, tmp_path), input="n\n")
    assert code == 0
    assert 'allow calculator({"expression": "1 + 1"})?' in out
    assert "denied: the call to 'calculator' was not approved (denied at the terminal)" in out


def test_agent_json_with_read_only_sql(stub: StubServer, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (total REAL)")
        conn.executemany("INSERT INTO orders VALUES (?)", [(10.0,), (32.0,)])
    stub.queue_replies(
        [ToolCall(id="call_1", name="sql", arguments='{"query": "DELETE FROM orders"}')],
        [ToolCall(id="call_2", name="sql", arguments='{"query": "SELECT SUM(total) FROM orders"}')],
        "Orders total 42.",
    )
    code, out = invoke(
        "agent", "Total of orders?", "--db", str(db), "--json", "--config", config_for(stub, tmp_path)
    )
    assert code == 0
    run = json.loads(out)
    assert run["output"] == "Orders total 42." and run["summary"]["tool_errors"] == 1
    statuses = [c["status"] for s in run["steps"] for c in s["tool_calls"]]
    assert statuses == ["error", "ok"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (2,)


def test_agent_stops_at_the_step_limit_with_exit_1(stub: StubServer, tmp_path: Path) -> None:
    stub.queue_replies(
        *[[ToolCall(id=f"c{i}", name="calculator", arguments='{"expression": "1"}')] for i in range(3)]
    )
    code, out = invoke("agent", "loop", "--max-steps", "2", "--config", config_for(stub, tmp_path))
    assert code == 1 and "(no answer: max_steps" in out


def test_agent_offline_baseline_without_tools_it_can_use() -> None:
    code, out = invoke("agent", "What is 6 times 7?", "--tools", "calculator")
    assert code == 0
    assert "No context was provided" in out  # the extractive baseline cannot call tools; it says so


def test_agent_tool_errors_are_clear() -> None:
    result = runner.invoke(app, ["agent", "x", "--tools", "browser"])
    assert result.exit_code != 0 and "unknown tools ['browser']" in str(result.exception)
    result = runner.invoke(app, ["agent", "x", "--tools", "http"])
    assert "off until you give --allow-url" in str(result.exception)


def test_agent_searches_the_demo_index(stub: StubServer, tmp_path: Path) -> None:
    from aiapp.config import load_settings
    from aiapp.retrieval import Index

    docs = next((d for d in DEMO_DOCS if (d / "faq.mdx").is_file()), None)
    if docs is None:
        pytest.skip("the Ollama demo corpus is not in this checkout")
    corpus = tmp_path / "demo"
    corpus.mkdir()
    shutil.copy(docs / "faq.mdx", corpus / "faq.mdx")
    config = config_for(stub, tmp_path)
    Index.open("demo", load_settings(config)).ingest(corpus)  # embeddings from the stub server
    stub.queue_replies(
        [ToolCall(id="call_1", name="search", arguments='{"query": "default context window size"}')],
        [ToolCall(id="call_2", name="calculator", arguments='{"expression": "4096 * 4"}')],
        "16384 tokens.",
    )
    code, out = invoke("agent", "Context with 4 parallel requests?", "--index", "demo", "--config", config)
    assert code == 0, out
    assert 'step 1: search {"query": "default context window size"} → [1] faq.mdx' in out
    assert 'step 2: calculator {"expression": "4096 * 4"} → 16384' in out
    tools_offered = {t["function"]["name"] for t in stub.requests("chat")[0]["tools"]}
    assert tools_offered == {"search", "calculator"}
