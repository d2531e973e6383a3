"""The vLLM provider against the stub server: discovery, health, structured outputs, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiapp.config import Deployment, Route, Settings, load_settings
from aiapp.errors import ConfigError, InputError, ProviderError
from aiapp.gateway import Gateway
from aiapp.gateway._pricing import PriceTable
from aiapp.gateway._registry import build_model
from aiapp.gateway._sync import run_sync
from aiapp.gateway.providers.vllm import VLLMModel, clear_discovery_cache, translate_structured
from aiapp.testing import StubServer
from aiapp.types import CallOptions, Message, ResponseFormat

REPO = Path(__file__).resolve().parents[3]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    clear_discovery_cache()
    yield
    clear_discovery_cache()


def vllm(stub: StubServer, name: str = "vllm/auto", **params: object) -> VLLMModel:
    model = build_model(
        Deployment(model=name, provider="vllm", api_base=stub.base_url, timeout_s=5, params=params),
        PriceTable(),
    )
    assert isinstance(model, VLLMModel)
    return model


def test_auto_and_provider_vllm_choose_the_vllm_kind() -> None:
    assert Deployment(model="vllm/auto", api_base="http://x/v1").kind == "vllm"
    assert Deployment(model="hosted_vllm/auto", api_base="http://x/v1").kind == "vllm"
    assert Deployment(model="vllm/m", provider="vllm", api_base="http://x/v1").kind == "vllm"
    assert Deployment(model="vllm/m", api_base="http://x/v1").kind == "openai"  # the plain fast path


def test_the_example_config_loads_as_a_vllm_route() -> None:
    settings = load_settings(REPO / "configs" / "vllm.example.yaml", env={})
    [deployment] = settings.routes["vllm"].deployments
    assert deployment.kind == "vllm" and deployment.api_base == "http://127.0.0.1:8001/v1"
    assert deployment.api_key_env == "VLLM_API_KEY"


def test_auto_discovers_the_served_model_once(stub: StubServer) -> None:
    stub.serve(["Qwen/Qwen2.5-0.5B-Instruct", "other"])
    model = vllm(stub)
    reply = model.complete([Message.user("hello")])
    assert reply.text == "stub reply: hello"
    assert stub.requests("chat")[-1]["model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    stub.serve(["changed"])  # cached per process: a second model on the same server does not ask again
    vllm(stub).complete([Message.user("again")])
    assert stub.requests("chat")[-1]["model"] == "Qwen/Qwen2.5-0.5B-Instruct"


def test_named_model_must_be_served(stub: StubServer) -> None:
    stub.serve(["served-one"])
    assert vllm(stub, "vllm/served-one").complete([Message.user("x")]).text == "stub reply: x"
    with pytest.raises(ConfigError, match=r"does not serve 'missing'; it serves 'served-one'") as info:
        vllm(stub, "vllm/missing").complete([Message.user("x")])
    assert info.value.field == "model"


def test_a_server_serving_nothing_is_a_config_error(stub: StubServer) -> None:
    stub.serve([])
    with pytest.raises(ConfigError, match="serves no model"):
        list(vllm(stub).stream([Message.user("x")]))
    assert stub.requests("chat") == []


def test_a_config_error_names_the_file_field_when_loaded(tmp_path: Path) -> None:
    path = tmp_path / "aiapp.yaml"
    path.write_text("routes:\n  q:\n    deployments:\n      - model: vllm/auto\n")
    settings = load_settings(path, env={})
    with pytest.raises(ConfigError, match="needs api_base"):
        build_model(settings.routes["q"].deployments[0], PriceTable())


def test_stream_after_discovery(stub: StubServer) -> None:
    stub.serve(["m"])
    chunks = list(vllm(stub).stream([Message.user("one two three")]))
    assert "".join(c.delta for c in chunks) == "stub reply: one two three"
    assert stub.requests("chat")[-1]["model"] == "m" and stub.requests("chat")[-1]["stream"] is True


def test_health_uses_get_health_and_spends_no_tokens(stub: StubServer) -> None:
    stub.serve(["m"])
    assert run_sync(vllm(stub).ahealth()) == "ok: serves m"
    assert stub.requests("chat") == []
    stub.serve(["m"], health=503)
    with pytest.raises(ProviderError):
        run_sync(vllm(stub).ahealth())


def test_gateway_check_and_models_cli_use_health(stub: StubServer, tmp_path: Path) -> None:
    stub.serve(["m"])
    settings = Settings(
        routes={"q": Route(deployments=[Deployment(model="vllm/auto", api_base=stub.base_url)])},
        default_route="q",
    )
    with Gateway(settings) as gw:
        [result] = gw.check(["q"])
    assert result.ok and result.detail == "ok: serves m"
    stub.serve([])
    with Gateway(settings) as gw:
        [result] = gw.check(["q"])
    assert not result.ok and "serves no model" in result.detail
    assert stub.requests("chat") == []

    stub.serve(["m"], health=500)
    config = tmp_path / "aiapp.yaml"
    config.write_text(
        f"default_route: q\nroutes:\n  q:\n    deployments:\n      - model: vllm/auto\n"
        f"        api_base: {stub.base_url}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "aiapp.cli", "models", "--check", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    [row] = [r for r in json.loads(run.stdout) if r["route"] == "q"]
    assert row["provider"] == "vllm" and "500" in row["check"]


def test_guided_options_pass_through_as_written_when_the_version_is_unknown(stub: StubServer) -> None:
    stub.serve(["m"])
    model = vllm(stub)
    model.complete([Message.user("x")], CallOptions(extra={"guided_choice": ["yes", "no"]}))
    assert stub.requests("chat")[-1]["guided_choice"] == ["yes", "no"]
    model.complete([Message.user("x")], CallOptions(extra={"guided_regex": r"\d+", "top_k": 5}))
    sent = stub.requests("chat")[-1]
    assert sent["guided_regex"] == r"\d+" and sent["top_k"] == 5


def test_guided_options_become_structured_outputs_on_new_servers(stub: StubServer) -> None:
    stub.serve(["m"], version="0.11.0")
    vllm(stub).complete([Message.user("x")], CallOptions(extra={"guided_json": SCHEMA}))
    sent = stub.requests("chat")[-1]
    assert sent["structured_outputs"] == {"json": SCHEMA} and "guided_json" not in sent


def test_structured_outputs_become_guided_fields_on_old_servers(stub: StubServer) -> None:
    stub.serve(["m"], version="0.6.3.post1")
    vllm(stub).complete(
        [Message.user("x")], CallOptions(extra={"structured_outputs": {"grammar": "root ::= x"}})
    )
    sent = stub.requests("chat")[-1]
    assert sent["guided_grammar"] == "root ::= x" and "structured_outputs" not in sent


def test_deployment_params_carry_vllm_fields(stub: StubServer) -> None:
    stub.serve(["m"])
    vllm(stub, temperature=0.0, guided_choice=["a", "b"], min_p=0.1).complete([Message.user("x")])
    sent = stub.requests("chat")[-1]
    assert (sent["temperature"], sent["guided_choice"], sent["min_p"]) == (0.0, ["a", "b"], 0.1)


def test_response_format_json_schema_is_sent_as_is(stub: StubServer) -> None:
    stub.serve(["m"])
    fmt = ResponseFormat(type="json_schema", json_schema=SCHEMA, name="answer")
    reply = vllm(stub).complete([Message.user("x")], CallOptions(response_format=fmt))
    assert stub.requests("chat")[-1]["response_format"]["type"] == "json_schema"
    assert "answer" in reply.json_data()


def test_two_constraints_are_refused_before_the_call(stub: StubServer) -> None:
    stub.serve(["m"])
    with pytest.raises(InputError, match="one structured-output constraint"):
        vllm(stub).complete(
            [Message.user("x")], CallOptions(extra={"guided_json": SCHEMA, "guided_regex": "a"})
        )
    assert stub.requests("chat") == []
    with pytest.raises(InputError, match="must be a mapping"):
        translate_structured({"structured_outputs": "json"}, new_api=True)


def test_unreachable_server_is_a_provider_error() -> None:
    model = VLLMModel("vllm/auto", api_base="http://127.0.0.1:9/v1", timeout_s=2)
    with pytest.raises(ProviderError):
        model.complete([Message.user("x")])


def test_vllm_check_script_exits_cleanly_without_a_gpu() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "vllm_check.py"), "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert run.returncode == 2, run.stderr
    line = json.loads(run.stdout.strip().splitlines()[-1])
    assert line["kind"] == "skipped" and ("GPU" in line["reason"] or "vllm" in line["reason"])


def test_vllm_check_script_runs_every_check_against_a_running_server(
    stub: StubServer, tmp_path: Path
) -> None:
    """``--base-url`` runs the script's gateway and ``aiapp serve`` checks without a GPU (here: the stub)."""
    stub.serve(["Qwen/Qwen2.5-0.5B-Instruct"])
    stub.queue_replies(
        "Hello there, my good friend.",  # gateway: complete
        "one two three four five six seven eight nine ten",  # gateway: stream
        json.dumps({"city": "Lyon", "country": "France"}),  # gateway: json_schema
        "yes",  # gateway: guided_choice
        "Hi!",  # serve: complete
        "Hi again!",  # serve: stream
    )
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "vllm_check.py"),
            "--base-url",
            stub.base_url,
            "--api-key",
            "sk-test",
            "--serve-port",
            str(_free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**_env(), "AIAPP_HOME": str(tmp_path / "home")},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    checks = {(line["kind"], line.get("check")): line for line in lines}
    assert set(checks) >= {
        ("vllm", "health"),
        *(("gateway", c) for c in ("health", "complete", "stream", "json_schema", "guided_choice")),
        ("serve", "complete"),
        ("serve", "stream"),
    }
    assert all(line["ok"] for line in checks.values()), lines
    assert checks[("gateway", "json_schema")]["data"] == {"city": "Lyon", "country": "France"}
    chats = stub.requests("chat")
    assert chats[0]["model"] == "Qwen/Qwen2.5-0.5B-Instruct"  # vllm/auto found the served model
    assert chats[3]["guided_choice"] == ["yes", "no"]  # vLLM's own options reach the server


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    import os

    keep = ("PATH", "HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LITELLM_LOCAL_MODEL_COST_MAP")
    return {k: os.environ[k] for k in keep if k in os.environ}
