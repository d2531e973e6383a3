"""Export into a real OpenTelemetry backend: Arize Phoenix on 127.0.0.1, read back through its API.

Phoenix lives in its own virtualenv (``bash scripts/phoenix.sh`` creates ``.venv-phoenix/``), so its
dependencies never meet ours. One ``phoenix serve`` (SQLite, in a temporary working directory) runs
for the test session. A RAG ``ask`` on the offline ``local/extractive`` route and an agent run
(scripted :class:`~aiapp.testing.FakeModel` tool calls) export over OTLP/HTTP; the spans are read
back from Phoenix's REST API (``GET /v1/projects/{project}/spans``) and checked against the local
store: the same tree, the GenAI attributes and aiapp's own. Skipped, saying why, only when Phoenix
is not installed or does not start.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiapp.agents import Agent
from aiapp.agents.tools import calculator
from aiapp.apps import RAGApp
from aiapp.config import Deployment, PromptSettings, Route, Settings, TracingSettings
from aiapp.gateway import Gateway
from aiapp.prompts import PromptRegistry
from aiapp.testing import FakeModel
from aiapp.types import Hit, ToolCall

REPO = Path(__file__).resolve().parents[2]
PHOENIX = Path(os.environ.get("AIAPP_PHOENIX") or REPO / ".venv-phoenix" / "bin" / "phoenix")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="session")
def phoenix() -> Iterator[str]:
    """The base URL of a ``phoenix serve`` started for this session."""
    if not PHOENIX.exists():
        pytest.skip(f"Phoenix is not installed ({PHOENIX} missing): run `bash scripts/phoenix.sh`")
    workdir = Path(tempfile.mkdtemp(prefix="aiapp-phoenix-"))
    port, grpc = _free_port(), _free_port()
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (workdir / "phoenix.log").open("wb")
    process = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                tail = (workdir / "phoenix.log").read_text(errors="replace")[-2000:]
                pytest.skip(f"phoenix serve exited with {process.returncode} before it was ready:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.skip("phoenix serve did not answer /healthz within 180 s")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _spans(base: str, project: str, trace_id: str, expected: int) -> list[dict[str, Any]]:
    """The trace's spans as Phoenix stores them (polled: Phoenix ingests asynchronously)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            rows = _get(f"{base}/v1/projects/{project}/spans?limit=1000")["data"]
        except OSError:
            rows = []
        spans = [s for s in rows if s["context"]["trace_id"] == "0" * 16 + trace_id]
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.3)


def _gateway(base: str, project: str, monkeypatch: pytest.MonkeyPatch, **models: Any) -> Gateway:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
    settings = Settings(
        prompts=PromptSettings(dir=REPO / "prompts"),
        routes={"local": Route(deployments=[Deployment(model="local/extractive")])},
        tracing=TracingSettings(
            export="otlp", endpoint=f"{base}/v1/traces", capture="full", export_content=True
        ),
    )
    return Gateway(settings, models=models)


HITS = [
    Hit(
        text="Ollama binds 127.0.0.1 port 11434 by default. Set OLLAMA_HOST=0.0.0.0 to listen on all "
        "interfaces. Models are stored in ~/.ollama/models.",
        source="corpora/ollama/faq.mdx",
        chunk_id="faq.mdx#3f2a",
        corpus_version="c0ffee",
        score=1.0,
    )
]


class FixedRetriever:
    name = "handbook"

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        return HITS[:k]


def test_a_rag_ask_on_the_local_route_reads_back_from_phoenix(
    phoenix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _gateway(phoenix, "aiapp-rag", monkeypatch) as gw:
        prompt = PromptRegistry(REPO / "prompts").get("support_answer")
        app = RAGApp(gateway=gw, retriever=FixedRetriever(), prompt=prompt, model="local")
        answer = app.ask("How do I make Ollama listen on all interfaces?")
        stored = gw.tracer.store.trace(answer.trace_id)  # type: ignore[union-attr]
        assert gw.tracer.flush_exports()
    spans = _spans(phoenix, "aiapp-rag", answer.trace_id, len(stored))
    assert len(spans) == len(stored), [s["name"] for s in spans]
    by_id = {s["context"]["span_id"]: s for s in spans}
    for record in stored:  # the tree, exactly as the local store has it
        assert by_id[record.span_id]["parent_id"] == record.parent_id
    root = by_id[answer.trace_id]
    assert root["parent_id"] is None and root["attributes"]["gen_ai.operation.name"] == "invoke_workflow"
    llm_record = next(r for r in stored if r.kind == "llm")
    llm = by_id[llm_record.span_id]
    a = llm["attributes"]
    assert llm["span_kind"] == "LLM" and llm["name"] == "chat local/extractive"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "local"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "local/extractive"
    assert a["gen_ai.usage.input_tokens"] == llm_record.input_tokens
    assert a["gen_ai.usage.output_tokens"] == llm_record.output_tokens
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["aiapp.prompt.ref"] == prompt.ref and a["aiapp.prompt.hash"] == prompt.content_hash
    assert a["aiapp.route"] == "local" and a["aiapp.deployment"] == "local/extractive"
    assert a["aiapp.cache.hit"] is False and a["aiapp.cost.usd"] == 0.0
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"][0]["content"] == answer.text
    retrieval = next(s for s in spans if s["span_kind"] == "RETRIEVER")
    assert retrieval["attributes"]["aiapp.corpus.version"] == "c0ffee"
    assert retrieval["attributes"]["gen_ai.data_source.id"] == "handbook"


def test_an_agent_run_reads_back_from_phoenix_with_tools_and_a_score(
    phoenix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeModel(
        [[ToolCall(id="c1", name="calculator", arguments=json.dumps({"expression": "3 * 8"}))], "24 GB."]
    )
    with _gateway(phoenix, "aiapp-agent", monkeypatch, m=fake) as gw:
        run = Agent(gateway=gw, model="m", tools=[calculator], name="sizer").run("RAM for three 8 GB models?")
        gw.tracer.export_score(run.trace_id, "task_success", 1.0, comment="right", source="eval")
        stored = gw.tracer.store.trace(run.trace_id)  # type: ignore[union-attr]
        assert gw.tracer.flush_exports()
    spans = _spans(phoenix, "aiapp-agent", run.trace_id, len(stored) + 1)
    by_id = {s["context"]["span_id"]: s for s in spans}
    root = by_id[run.trace_id]
    assert root["span_kind"] == "AGENT" and root["name"] == "invoke_agent sizer"
    assert root["attributes"]["gen_ai.agent.name"] == "sizer"
    assert root["attributes"]["gen_ai.usage.input_tokens"] == run.usage.input_tokens
    children = sorted((s for s in spans if s["parent_id"] == run.trace_id), key=lambda s: s["start_time"])
    assert [c["span_kind"] for c in children] == ["LLM", "TOOL", "LLM", "EVALUATOR"]
    tool = children[1]["attributes"]
    assert tool["gen_ai.operation.name"] == "execute_tool" and tool["gen_ai.tool.name"] == "calculator"
    assert tool["gen_ai.tool.call.result"] == "24"
    assert children[0]["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    [event] = children[3]["events"]
    assert event["name"] == "gen_ai.evaluation.result"
    assert event["attributes"]["gen_ai.evaluation.name"] == "task_success"
    assert event["attributes"]["gen_ai.evaluation.score.value"] == 1.0
    assert event["attributes"]["gen_ai.evaluation.explanation"] == "right"
