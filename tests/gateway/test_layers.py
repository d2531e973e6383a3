"""Middleware layers wrap every route's model, and annotate the call's trace."""

from __future__ import annotations

from collections.abc import Sequence

from aiapp.config import Settings
from aiapp.gateway import Gateway, Model
from aiapp.gateway._layers import _LAYERS, LayerContext, layers, register_layer
from aiapp.testing import FakeModel
from aiapp.tracing import annotate
from aiapp.types import CallOptions, Completion, Message


class Shout(Model):
    """A toy middleware: upper-cases replies and notes that it did."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.name = inner.name

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        reply = await self.inner.acomplete(messages, options)
        annotate(shouted=True)
        return reply.model_copy(update={"text": reply.text.upper()})


def test_a_registered_layer_wraps_routes_and_annotates_traces() -> None:
    seen: list[str] = []

    @register_layer("shout", order=99)
    def shout(context: LayerContext, model: Model) -> Model | None:
        seen.append(context.route)
        return Shout(model) if context.route == "loud" else None

    try:
        assert "shout" in layers()
        gw = Gateway(Settings(), models={"loud": FakeModel(["hello"]), "quiet": FakeModel(["hello"])})
        loud = gw.complete("hi", model="loud")
        quiet = gw.complete("hi", model="quiet")
        assert (loud.text, quiet.text) == ("HELLO", "hello")
        assert seen == ["loud", "quiet"]
        [span] = gw.tracer.store.trace(loud.trace_id)  # type: ignore[union-attr,arg-type]
        assert span.attributes == {"shouted": True, "finish_reason": "stop"}
    finally:
        _LAYERS[:] = [entry for entry in _LAYERS if entry[1] != "shout"]
