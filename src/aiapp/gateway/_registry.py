"""Provider registry: how a configured :class:`~aiapp.config.Deployment` becomes a :class:`Model`.

Built in: ``local`` (offline models), ``openai`` (the OpenAI-compatible fast path), ``vllm`` (that
path plus model discovery, health and structured outputs) and ``litellm`` (everything else). Add your own with :func:`register_provider`; heavy imports stay inside factories.
"""

from __future__ import annotations

from collections.abc import Callable

from aiapp._gateway_config import provider_prefix_problem
from aiapp.config import KNOWN_PREFIXES, Deployment
from aiapp.errors import ConfigError
from aiapp.gateway._model import Model
from aiapp.gateway._pricing import PriceTable
from aiapp.types import CallOptions

ProviderFactory = Callable[[Deployment, PriceTable], Model]

_PROVIDERS: dict[str, ProviderFactory] = {}


def register_provider(kind: str) -> Callable[[ProviderFactory], ProviderFactory]:
    """Decorator: serve deployments whose ``provider:`` is ``kind`` (any model name).

    Example::

        @register_provider("echo")
        def make_echo(deployment, prices):
            return EchoModel(deployment.model)
    """

    def decorate(factory: ProviderFactory) -> ProviderFactory:
        _PROVIDERS[kind] = factory
        return factory

    return decorate


def providers() -> list[str]:
    """Names of the registered providers."""
    return sorted(_PROVIDERS)


def build_model(deployment: Deployment, prices: PriceTable) -> Model:
    """Instantiate the model for one deployment.

    Raises:
        ConfigError: the provider (or the model's ``provider/`` prefix) does not exist. Checked
            here too, for settings built in code and ad-hoc ``provider/model`` names, so an unknown
            prefix never reaches a provider as a request.
    """
    problem = provider_prefix_problem(deployment.model, provider=deployment.provider, ours=KNOWN_PREFIXES)
    if problem is not None:
        raise ConfigError(problem, field="model")
    kind = deployment.kind
    factory = _PROVIDERS.get(kind)
    if factory is None:
        raise ConfigError(
            f"unknown provider {kind!r} for model {deployment.model!r} (known: {', '.join(providers())})",
            field="provider",
        )
    return factory(deployment, prices)


def _defaults(deployment: Deployment) -> CallOptions:
    try:
        return CallOptions.model_validate(deployment.params)
    except ValueError as exc:
        raise ConfigError(f"bad params for {deployment.model}: {exc}", field="params") from exc


@register_provider("local")
def _local(deployment: Deployment, prices: PriceTable) -> Model:
    from aiapp.gateway.providers.local import ExtractiveModel

    name = deployment.model.split("/", 1)[-1]
    if name != "extractive":
        raise ConfigError(
            f"unknown local model {deployment.model!r} (known: local/extractive)", field="model"
        )
    return ExtractiveModel()


@register_provider("openai")
def _openai(deployment: Deployment, prices: PriceTable) -> Model:
    from aiapp.gateway.providers.openai_compat import OpenAICompatibleModel

    return OpenAICompatibleModel(
        deployment.model,
        api_base=deployment.api_base,
        api_key_env=deployment.api_key_env,
        timeout_s=deployment.timeout_s,
        prices=prices,
        default_options=_defaults(deployment),
    )


@register_provider("vllm")
def _vllm(deployment: Deployment, prices: PriceTable) -> Model:
    from aiapp.gateway.providers.vllm import VLLMModel, vllm_options

    defaults, _ = vllm_options(deployment.params)
    return VLLMModel(
        deployment.model,
        api_base=deployment.api_base,
        api_key_env=deployment.api_key_env,
        timeout_s=deployment.timeout_s,
        prices=prices,
        default_options=defaults,
    )


@register_provider("litellm")
def _litellm(deployment: Deployment, prices: PriceTable) -> Model:
    from aiapp.gateway.providers.litellm import LiteLLMModel

    return LiteLLMModel(
        deployment.model,
        api_base=deployment.api_base,
        api_key_env=deployment.api_key_env,
        timeout_s=deployment.timeout_s,
        prices=prices,
        default_options=_defaults(deployment),
    )
