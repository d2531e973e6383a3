"""The ``shadow`` gateway layer: a route mirrored to another route after each answer.

Offered to the gateway as the ``aiapp.layers`` entry point ``shadow`` (loaded when a route sets
``shadow:``)::

    routes:
      support:
        deployments: [{model: openai/gpt-4o-mini}]
        shadow: {route: candidate, sample: 0.2, max_in_flight: 4, budget_usd: 1}

It sits outermost (after guards and the cache), so only calls the primary really answered are
mirrored. The shadow goes through ``Gateway.acomplete`` on its own route, so it is traced (with
``shadow_of: {pair, route}``) and budgeted like any call; the primary's trace carries
``shadow: {pair, status}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from aiapp._rollout_config import ShadowSpec, sticky_key
from aiapp.errors import ConfigError
from aiapp.gateway import LayerContext, Model, current_call, register_layer
from aiapp.rollout._shadow import Reservation, ShadowRunner, in_shadow
from aiapp.tracing import annotate
from aiapp.types import CallOptions, Completion, Message, StreamChunk

if TYPE_CHECKING:
    from aiapp.gateway import Gateway

__all__ = ["ShadowModel", "shadow_layer"]


class ShadowModel(Model):
    """Wraps a route's model: answers from it, then mirrors the call to ``spec.route`` in the background.

    Args:
        inner: The route's model (with its other layers).
        gateway: The gateway, through which the shadow call is made and traced.
        route: The primary route's name.
        spec: Where the shadow goes and its limits.
    """

    def __init__(self, inner: Model, gateway: Gateway, route: str, spec: ShadowSpec) -> None:
        assert spec.route is not None
        self.inner = inner
        self.gateway = gateway
        self.route = route
        self.shadow_route = spec.route
        self.name = inner.name
        self.info = inner.info
        self.runner = ShadowRunner(spec, target=f"route:{spec.route}")

    def _reserve(self) -> Reservation | None:
        if in_shadow():
            return None
        call = current_call()
        reservation = self.runner.reserve(sticky_key(call.metadata) if call is not None else None)
        if reservation is not None:
            annotate(**reservation.attributes())
        return reservation

    def _launch(
        self, reservation: Reservation, messages: Sequence[Message], options: CallOptions | None
    ) -> None:
        gateway, route, primary = self.gateway, self.shadow_route, self.route
        copied = list(messages)

        async def run(pair: str) -> Completion:
            return await gateway.acomplete(
                copied,
                model=route,
                options=options,
                metadata={"shadow_of": {"pair": pair, "route": primary, "role": "shadow"}},
            )

        reservation.launch(run)

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        """The primary's answer; the shadow starts after it, in the background."""
        reservation = self._reserve()
        try:
            completion = await self.inner.acomplete(messages, options)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        if reservation is not None:
            self._launch(reservation, messages, options)
        return completion

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """The primary's stream; the shadow starts once it has ended."""
        reservation = self._reserve()
        try:
            async for chunk in self.inner.astream(messages, options):
                yield chunk
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        if reservation is not None:
            self._launch(reservation, messages, options)

    def close(self) -> None:
        """Cancel running shadows and close the route's model."""
        self.runner.cancel()
        self.inner.close()

    async def aclose(self) -> None:
        """Cancel running shadows and close the route's model on the running loop."""
        self.runner.cancel()
        await self.inner.aclose()


@register_layer("shadow", order=40)
def shadow_layer(context: LayerContext, model: Model) -> Model | None:
    """The layer factory: a :class:`ShadowModel` for routes that set ``shadow:``."""
    config = context.config
    if config is None or config.shadow is None:
        return None
    spec = config.shadow
    where = f"routes.{context.route}.shadow"
    source = str(context.settings.source) if context.settings.source else None
    if spec.prompt is not None:
        raise ConfigError(
            "a route's shadow mirrors the same messages to another route; a prompt shadow belongs "
            "in prompts/labels.yaml",
            path=source,
            field=f"{where}.prompt",
        )
    if spec.route is None:
        raise ConfigError(
            "a route's shadow must name the route it mirrors to", path=source, field=f"{where}.route"
        )
    if spec.route == context.route:
        raise ConfigError("a route cannot shadow itself", path=source, field=f"{where}.route")
    known = context.gateway.route_names()
    if spec.route not in known and "/" not in spec.route:
        raise ConfigError(
            f"shadow route {spec.route!r} is not defined (known: {', '.join(known)})",
            path=source,
            field=f"{where}.route",
        )
    return ShadowModel(model, context.gateway, context.route, spec)
