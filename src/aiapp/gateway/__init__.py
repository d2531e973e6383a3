"""The gateway: one :class:`Model` seam, providers behind it, and a :class:`Gateway` that routes,
accounts cost and traces every call.

Start with :meth:`Gateway.from_config`. Everything that answers messages — providers, routes,
``aiapp.testing.FakeModel`` — is a :class:`Model`, so they plug in at the same point.
"""

from aiapp.gateway._errors import error_for_status, map_exception, parse_retry_after
from aiapp.gateway._gateway import CheckResult, Gateway, PromptRef
from aiapp.gateway._model import Model, ModelInfo, collect
from aiapp.gateway._pricing import PriceTable, TokenPrice
from aiapp.gateway._registry import build_model, providers, register_provider
from aiapp.gateway._route import RouteModel

__all__ = [
    "CheckResult",
    "Gateway",
    "Model",
    "ModelInfo",
    "PriceTable",
    "PromptRef",
    "RouteModel",
    "TokenPrice",
    "build_model",
    "collect",
    "error_for_status",
    "map_exception",
    "parse_retry_after",
    "providers",
    "register_provider",
]
