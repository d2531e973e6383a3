"""The provider registry: an unknown provider prefix is a ConfigError before anything is sent.

The config layer knows litellm's providers from a shipped list (so loading a config never
imports litellm); the test below keeps that list a superset of the installed litellm's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiapp._gateway_config import litellm_providers
from aiapp.config import Deployment, Route, Settings
from aiapp.errors import ConfigError, ProviderError
from aiapp.gateway import Gateway, PriceTable, build_model


def test_the_shipped_provider_list_covers_the_installed_litellm() -> None:
    import litellm

    installed = {getattr(p, "value", p) for p in litellm.provider_list}
    missing = sorted(installed - litellm_providers())
    assert not missing, (
        f"litellm knows providers missing from src/aiapp/data/litellm_providers.txt: {missing}; "
        "regenerate it (the command is in its header)"
    )


def test_loading_a_config_does_not_import_litellm(tmp_path: Path) -> None:
    config = tmp_path / "aiapp.yaml"
    config.write_text("routes:\n  r:\n    deployments: [{model: anthropic/claude-haiku-4-5}]\n")
    code = (
        "import sys; from aiapp.config import load_settings; "
        f"load_settings({str(config)!r}); print('litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_building_an_unknown_prefix_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'nosuch' in model 'nosuch/foo'") as info:
        build_model(Deployment(model="nosuch/foo"), PriceTable())
    assert info.value.field == "model"
    build_model(Deployment(model="local/extractive"), PriceTable())  # known prefixes build


def test_calling_an_unknown_prefix_is_a_config_error_not_an_http_400(tmp_path: Path) -> None:
    # Before: litellm's "LLM Provider NOT provided" came back as BadRequestError (HTTP 400).
    routes = {"bad": Route(deployments=[Deployment(model="nosuch/foo")])}
    gw = Gateway(Settings(home=tmp_path, routes=routes))
    for model in ("bad", "nosuch/other"):  # a route built in code, and an ad-hoc provider/model
        with pytest.raises(ConfigError, match="unknown provider 'nosuch'") as info:
            gw.complete("hi", model=model)
        assert not isinstance(info.value, ProviderError)
    gw.close()
