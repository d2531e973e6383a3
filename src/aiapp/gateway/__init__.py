"""The gateway: one :class:`Model` seam, providers behind it, and a :class:`Gateway` that routes,
accounts cost and traces every call.

Start with :meth:`Gateway.from_config`. Everything that answers messages — providers, routes,
``aiapp.testing.FakeModel`` — is a :class:`Model`, so they plug in at the same point.

Around each route's :class:`RouteModel` (strategies, retries, circuit breakers, timeouts) sit the
middleware layers registered in :mod:`aiapp.gateway._layers`: budgets and rate limits
(:mod:`aiapp.gateway.budgets`), the response cache (:mod:`aiapp.gateway.cache`), guards.
"""

from aiapp.gateway import budgets as budgets  # registers the budget layer
from aiapp.gateway import cache as cache  # registers the cache layer
from aiapp.gateway._allow import is_loopback
from aiapp.gateway._clock import Clock, ManualClock, SystemClock
from aiapp.gateway._context import CallContext, Document, current_call, current_documents, with_documents
from aiapp.gateway._errors import error_for_status, map_exception, parse_retry_after
from aiapp.gateway._feedback import feedback
from aiapp.gateway._gateway import CheckResult, Gateway, PromptRef
from aiapp.gateway._health import DeploymentHealth, HealthBoard
from aiapp.gateway._layers import ENTRY_POINT_GROUP, LayerContext, LayerFactory, layers, register_layer
from aiapp.gateway._model import Model, ModelInfo, collect
from aiapp.gateway._pricing import PriceTable, TokenPrice
from aiapp.gateway._registry import build_model, providers, register_provider
from aiapp.gateway._route import RouteDeployment, RouteModel, build_route
from aiapp.gateway._sync import iter_sync, run_sync, sync_iterator, sync_method

__all__ = [
    "ENTRY_POINT_GROUP",
    "CallContext",
    "CheckResult",
    "Clock",
    "DeploymentHealth",
    "Document",
    "Gateway",
    "HealthBoard",
    "LayerContext",
    "LayerFactory",
    "ManualClock",
    "Model",
    "ModelInfo",
    "PriceTable",
    "PromptRef",
    "RouteDeployment",
    "RouteModel",
    "SystemClock",
    "TokenPrice",
    "build_model",
    "build_route",
    "collect",
    "current_call",
    "current_documents",
    "error_for_status",
    "feedback",
    "is_loopback",
    "iter_sync",
    "layers",
    "map_exception",
    "parse_retry_after",
    "providers",
    "register_layer",
    "register_provider",
    "run_sync",
    "sync_iterator",
    "sync_method",
    "with_documents",
]
