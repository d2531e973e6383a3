"""Test doubles that ship with aiapp, so users test their apps the way we test ours.

- :class:`FakeModel` — a scripted :class:`~aiapp.gateway._model.Model`: queue replies (text, tool
  calls, exceptions, functions of the request), then assert on the recorded :class:`FakeCall` list.
- :class:`ToolCallingModel` — calls every tool it is offered with schema-valid arguments, then
  answers with their results: an agent's tools exercised without a script.
- :func:`block_provider_calls` — inside it, any real provider call raises instead of being sent
  (loopback servers such as :class:`StubServer` stay allowed by default).
- :func:`embed_text` — the stub's deterministic hashed-token embedding, to compute expected vectors.
- :class:`StubServer` — a local OpenAI-compatible HTTP server (chat, streaming, tool calls,
  embeddings) with scripted replies and fault injection (429, 5xx, timeouts, garbage, cut streams),
  for running real provider code paths without a network. Runs in-process or as a child process.

``StubServer`` is imported lazily so that ``import aiapp.testing`` stays light and
``python -m aiapp.testing._stub_server`` runs cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiapp.testing._block import block_provider_calls
from aiapp.testing._fake import FakeCall, FakeModel, FakeReply, FakeResponse
from aiapp.testing._stub_wire import embed_text
from aiapp.testing._tool_model import ToolCallingModel, arguments_for

if TYPE_CHECKING:
    from aiapp.testing._stub_server import StubServer

__all__ = [
    "FakeCall",
    "FakeModel",
    "FakeReply",
    "FakeResponse",
    "StubServer",
    "ToolCallingModel",
    "arguments_for",
    "block_provider_calls",
    "embed_text",
]


def __getattr__(name: str) -> Any:
    if name == "StubServer":
        from aiapp.testing._stub_server import StubServer

        return StubServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
