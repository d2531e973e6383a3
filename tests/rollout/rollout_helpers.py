"""Shared pieces of the rollout tests: a prompts directory with splits, and a model that blocks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from aiapp.errors import ProviderServerError
from aiapp.gateway import Model
from aiapp.types import CallOptions, Completion, Message, Usage

PROMPT = """\
name: {name}
version: {version}
{model}variables:
  question: {{type: string}}
  context: {{type: string, default: ""}}
messages:
  - role: user
    content: "v{version}: {{{{ question }}}} {{{{ context }}}}"
"""


def make_prompts(root: Path, labels: str, models: dict[int, str] | None = None) -> Path:
    """``answer`` v1..v3 (v<N> may name a route) and the given labels.yaml."""
    for version in (1, 2, 3):
        path = root / "answer" / f"v{version}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        model = f"model: {models[version]}\n" if models and version in models else ""
        path.write_text(PROMPT.format(name="answer", version=version, model=model))
    (root / "labels.yaml").write_text(labels)
    return root


class Blocking(Model):
    """Answers only once :attr:`gate` is set; :attr:`entered` says a call is waiting."""

    name = "test/blocking"

    def __init__(self, text: str = "shadow says hi", *, cost: float = 0.0, fail: bool = False) -> None:
        self.text = text
        self.cost = cost
        self.fail = fail
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls: list[list[Message]] = []

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        self.calls.append(list(messages))
        self.entered.set()
        await self.gate.wait()
        if self.fail:
            raise ProviderServerError("the shadow is down", status=500)
        return Completion(
            text=self.text, model=self.name, usage=Usage(input_tokens=3, output_tokens=3, cost_usd=self.cost)
        )


class Flaky(Model):
    """Fails every ``every``-th call with a 500 (1 = always)."""

    name = "test/flaky"

    def __init__(self, every: int, text: str = "flaky ok") -> None:
        self.every = every
        self.text = text
        self.count = 0

    async def acomplete(self, messages: Sequence[Message], options: CallOptions | None = None) -> Completion:
        self.count += 1
        await asyncio.sleep(0)
        if self.count % self.every == 0:
            raise ProviderServerError("injected failure", status=500)
        return Completion(text=self.text, model=self.name, usage=Usage(input_tokens=1, output_tokens=2))
