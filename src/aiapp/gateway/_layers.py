"""Middleware layers: what wraps a route's model (budgets, caches, guards) and in which order.

Each layer is a factory that receives the route being built and the model built so far, and
returns a wrapping :class:`Model` (or ``None`` to leave it alone). Lower ``order`` wraps first,
i.e. sits closer to the provider. The intended stack, outermost first::

    guards (30)  →  cache (20)  →  budgets and limits (10)  →  router (failover, retries)  →  providers

Features register their layer in their own module, so the gateway core does not change when one
is added.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiapp.config import Route, Settings
from aiapp.errors import ConfigError
from aiapp.gateway._model import Model

if TYPE_CHECKING:
    from aiapp.gateway._gateway import Gateway


@dataclass(frozen=True)
class LayerContext:
    """What a layer factory sees.

    Attributes:
        route: The route's name.
        config: Its configuration (``None`` for models injected with ``Gateway(models=...)``).
        settings: All settings.
        gateway: The gateway being built (for its tracer, prices, embedders).
    """

    route: str
    config: Route | None
    settings: Settings
    gateway: Gateway


LayerFactory = Callable[[LayerContext, Model], Model | None]

_LAYERS: list[tuple[int, str, LayerFactory]] = []


def register_layer(name: str, *, order: int) -> Callable[[LayerFactory], LayerFactory]:
    """Decorator: add a middleware layer. Re-registering a name replaces it."""

    def decorate(factory: LayerFactory) -> LayerFactory:
        _LAYERS[:] = [entry for entry in _LAYERS if entry[1] != name]
        _LAYERS.append((order, name, factory))
        _LAYERS.sort(key=lambda entry: (entry[0], entry[1]))
        return factory

    return decorate


def layers() -> list[str]:
    """Registered layer names, innermost first."""
    return [name for _, name, _ in _LAYERS]


#: The entry-point group through which packages outside the gateway (aiapp's own guardrails, or
#: a third party's) offer a layer. An entry point is named after the route field it serves and
#: points at its factory; it is loaded when a route first sets that field, so ``import
#: aiapp.gateway`` stays light and the layer may import the gateway::
#:
#:     [project.entry-points."aiapp.layers"]
#:     guards = "aiapp.guardrails._layer:guard_layer"
ENTRY_POINT_GROUP = "aiapp.layers"


@functools.cache
def _offered() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


#: The entry-point group that offers the trace redactor (``tracing.capture: redacted``); the
#: ``default`` entry is aiapp's own PII and secrets redaction from the guardrails package.
REDACTOR_GROUP = "aiapp.redactors"


def load_redactor(name: str = "default") -> Callable[[str], str]:
    """The trace redactor offered as the ``aiapp.redactors`` entry point ``name``.

    Raises:
        ConfigError: when no package offers it (``tracing.capture: redacted`` cannot be honoured).
    """
    for entry in importlib.metadata.entry_points(group=REDACTOR_GROUP):
        if entry.name == name:
            redactor: Callable[[str], str] = entry.load()
            return redactor
    raise ConfigError(
        f"tracing.capture is 'redacted' but no {REDACTOR_GROUP!r} entry point named {name!r} is "
        "installed (aiapp's own lives in aiapp.guardrails; reinstall aiapp)",
        field="tracing.capture",
    )


def _load_plugins(context: LayerContext) -> None:
    config = context.config
    if config is None:
        return
    registered = {name for _, name, _ in _LAYERS}
    for field in type(config).model_fields:
        if field in registered or getattr(config, field, None) is None:
            continue
        entry = _offered().get(field)
        if entry is None:
            continue
        factory = entry.load()  # importing its module registers it with @register_layer
        if field not in {name for _, name, _ in _LAYERS}:
            raise ConfigError(
                f"the {ENTRY_POINT_GROUP!r} entry point {field!r} ({entry.value}) loaded "
                f"{factory!r} but registered no layer named {field!r}",
                field=f"routes.{context.route}.{field}",
            )


def apply_layers(context: LayerContext, model: Model) -> Model:
    """Wrap ``model`` with every registered layer, innermost first."""
    _load_plugins(context)
    for _, _, factory in _LAYERS:
        wrapped = factory(context, model)
        if wrapped is not None:
            model = wrapped
    return model
