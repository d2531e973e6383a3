"""Settings load from YAML + environment, and every mistake names its file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiapp.config import load_settings
from aiapp.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aiapp.yaml"
    path.write_text(text)
    return path


def test_embedded_defaults_run_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here
    settings = load_settings()
    assert settings.source is None
    assert settings.default_route == "local"
    assert settings.routes["local"].deployments[0].model == "local/extractive"


def test_shipped_config_is_valid(aiapp_home: Path) -> None:
    settings = load_settings(REPO / "configs" / "aiapp.yaml")
    assert {"local", "openai", "anthropic", "vllm", "judge"} <= set(settings.routes)
    assert settings.routes["openai"].deployments[0].kind == "openai"
    assert settings.routes["anthropic"].deployments[0].kind == "litellm"
    assert settings.routes["vllm"].deployments[0].kind == "openai"
    assert settings.home == aiapp_home


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "routes:\n  fast:\n    deployments:\n      - model: openai/gpt-4o-mini\n        temprature: 0\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 5, "routes.fast.deployments.0.temprature")
    assert "unknown key 'temprature'" in str(err)
    assert f"{path}:5" in str(err)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "routes:\n  fast: [unclosed\n")
    with pytest.raises(ConfigError, match=r"aiapp.yaml:3: invalid YAML"):
        load_settings(path)


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aiapp.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(path)


def test_environment_references(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "routes:\n  vllm:\n    deployments:\n      - model: vllm/m\n        api_base: ${MY_BASE:-http://x:1/v1}\n",
    )
    assert load_settings(path, env={}).routes["vllm"].deployments[0].api_base == "http://x:1/v1"
    assert (
        load_settings(path, env={"MY_BASE": "http://y/v1"}).routes["vllm"].deployments[0].api_base
        == "http://y/v1"
    )
    path = write(
        tmp_path, "routes:\n  vllm:\n    deployments:\n      - model: vllm/m\n        api_base: ${NOPE}\n"
    )
    with pytest.raises(
        ConfigError, match=r"aiapp.yaml:5 \(routes.vllm.deployments.0.api_base\).*NOPE is not set"
    ):
        load_settings(path, env={})


def test_default_route_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="default_route 'missing' is not a defined route"):
        load_settings(write(tmp_path, "default_route: missing\n"))


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "routes:\n  other:\n    deployments: [{model: local/extractive}]\n")
    settings = load_settings(
        path, env={"AIAPP_DEFAULT_ROUTE": "other", "AIAPP_TRACING": "0", "AIAPP_HOME": "/x"}
    )
    assert settings.default_route == "other"
    assert settings.tracing.enabled is False
    assert settings.home == Path("/x")


def test_config_hash_changes_with_content(tmp_path: Path) -> None:
    a = load_settings(write(tmp_path, "default_route: local\n"))
    b = load_settings(write(tmp_path, "tracing: {store_content: false}\n"))
    assert a.config_hash() != b.config_hash()
    assert len(a.config_hash()) == 12


def test_aiapp_config_env_must_point_at_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIAPP_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="AIAPP_CONFIG points at a file that does not exist"):
        load_settings()


def test_an_unknown_provider_prefix_names_the_model_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "routes:\n"
        "  main:\n"
        "    strategy: fallback\n"
        "    deployments:\n"
        "      - model: openai/gpt-4o-mini\n"
        "      - api_base: http://127.0.0.1:9\n"
        "        model: nosuch/foo\n",
    )
    with pytest.raises(ConfigError, match="unknown provider 'nosuch' in model 'nosuch/foo'") as info:
        load_settings(path, env={})
    assert info.value.path == str(path) and info.value.line == 7
    assert info.value.field == "routes.main.deployments.1.model"


def test_a_misspelt_provider_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "routes:\n  r:\n    deployments: [{model: antrhopic/claude-haiku-4-5}]\n")
    with pytest.raises(ConfigError, match="did you mean 'anthropic'") as info:
        load_settings(path, env={})
    assert info.value.line == 3


def test_known_provider_prefixes_pass(tmp_path: Path) -> None:
    models = ["anthropic/claude-haiku-4-5", "bedrock/x", "gemini/g", "hosted_vllm/m", "vllm/m", "gpt-4o-mini"]
    lines = "".join(f"      - model: {m}\n" for m in models)
    path = write(tmp_path, f"routes:\n  r:\n    deployments:\n{lines}")
    assert [d.model for d in load_settings(path, env={}).routes["r"].deployments] == models


def test_an_explicit_custom_provider_takes_any_model_name(tmp_path: Path) -> None:
    # Providers registered in code (register_provider) are judged when the route is built.
    path = write(tmp_path, "routes:\n  r:\n    deployments: [{model: x/m, provider: my-provider}]\n")
    assert load_settings(path, env={}).routes["r"].deployments[0].provider == "my-provider"
    path = write(tmp_path, "routes:\n  r:\n    deployments: [{model: local/m, provider: litellm}]\n")
    with pytest.raises(ConfigError, match="unknown provider 'local'"):  # litellm has no 'local'
        load_settings(path, env={})


def test_an_ad_hoc_default_route_is_checked_too(tmp_path: Path) -> None:
    path = write(tmp_path, "default_route: nosuch/foo\n")
    with pytest.raises(ConfigError, match="unknown provider 'nosuch'") as info:
        load_settings(path, env={})
    assert info.value.line == 1 and info.value.field == "default_route"
    with pytest.raises(ConfigError, match="unknown provider 'nosuch'"):
        load_settings(write(tmp_path, ""), env={"AIAPP_DEFAULT_ROUTE": "nosuch/foo"})
