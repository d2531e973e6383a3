"""Guard tests: a provider whose models tests script, and a config file that puts guards on a route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from aiapp.config import Deployment, Settings, load_settings
from aiapp.gateway import Gateway, Model, register_provider
from aiapp.gateway._pricing import PriceTable
from aiapp.testing import FakeModel
from aiapp.types import CallOptions, Completion, Message, StreamChunk

#: Models served by the ``scripted`` provider, by deployment model name; tests put theirs here.
SCRIPTED: dict[str, Model] = {}


@register_provider("scripted")
def _scripted(deployment: Deployment, prices: PriceTable) -> Model:
    return SCRIPTED[deployment.model]


class ChunkedModel(Model):
    """Streams the given chunks exactly as split (to put a secret across chunk boundaries)."""

    def __init__(self, chunks: Sequence[str]) -> None:
        self.name = "test/chunked"
        self.chunks = list(chunks)
        self.calls: list[list[Message]] = []

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        self.calls.append(list(messages))
        return Completion(text="".join(self.chunks), model=self.name)

    async def astream(
        self, messages: Sequence[Message], options: CallOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        self.calls.append(list(messages))
        for chunk in self.chunks[:-1]:
            await asyncio.sleep(0)
            yield StreamChunk(delta=chunk)
        yield StreamChunk(delta=self.chunks[-1], finish_reason="stop")


GUARDED_CONFIG = """
default_route: support
routes:
  support:
    deployments:
      - {model: test/support, provider: scripted}
    guards:
      input:
        - injection
        - {type: pii, action: redact}
        - {type: limits, max_chars: 2000}
      output:
        - {type: secrets, action: block}
        - {type: pii, action: redact}
      window_chars: 64
"""


@pytest.fixture
def fake() -> Iterator[FakeModel]:
    model = FakeModel(name="test/support")
    SCRIPTED["test/support"] = model
    yield model
    SCRIPTED.pop("test/support", None)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "configs" / "aiapp.yaml"
    path.parent.mkdir()
    path.write_text(GUARDED_CONFIG)
    return path


@pytest.fixture
def settings(config_file: Path) -> Settings:
    return load_settings(config_file)


@pytest.fixture
def gateway(settings: Settings, fake: FakeModel) -> Iterator[Gateway]:
    with Gateway(settings) as gw:
        yield gw


@pytest.fixture
def scripted() -> dict[str, Model]:
    """The ``scripted`` provider's models by deployment name."""
    return SCRIPTED


@pytest.fixture
def chunked() -> type[ChunkedModel]:
    """A model class that streams exactly the chunks it is given."""
    return ChunkedModel
