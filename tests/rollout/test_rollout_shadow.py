"""Shadows never change or delay the primary, are dropped (not queued) over their limits, and their
errors never surface. "Never delays" is shown without timing: the primary returns while its shadow
is still blocked on an event."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from rollout_helpers import Blocking, make_prompts

from aiapp._rollout_config import ShadowSpec
from aiapp.config import Deployment, Route, Settings
from aiapp.errors import ConfigError
from aiapp.gateway import Gateway, register_provider
from aiapp.gateway._pricing import PriceTable
from aiapp.prompts import PromptRegistry
from aiapp.rollout import Rollout, ShadowModel, ShadowRunner
from aiapp.testing import FakeModel
from aiapp.tracing import TraceStore

LABELS = """\
production:
  answer:
    split: {v1: 100}
    shadow: {prompt: answer@v2, route: shadow, max_in_flight: 2, budget_usd: 1.0}
"""


def rollout_over(
    tmp_path: Path, shadow: Blocking, labels: str = LABELS
) -> tuple[Rollout, TraceStore, FakeModel]:
    store = TraceStore(tmp_path / "traces.db")
    primary = FakeModel(name="test/primary", default="the primary answer")
    gw = Gateway(Settings(), models={"primary": primary, "shadow": shadow}, store=store)
    registry = PromptRegistry(make_prompts(tmp_path / "prompts", labels))
    return Rollout(gw, registry), store, primary


async def test_the_primary_returns_while_its_shadow_is_still_blocked(tmp_path: Path) -> None:
    shadow = Blocking()
    rollout, store, _ = rollout_over(tmp_path, shadow)
    reply = await rollout.acomplete("answer", {"question": "why?"}, key="alice", model="primary")
    assert reply.text == "the primary answer"
    await asyncio.wait_for(shadow.entered.wait(), 10)  # the shadow started ...
    assert not shadow.gate.is_set()  # ... and is still blocked: the primary did not wait for it
    runner = rollout._shadows["production/answer"]
    assert runner.in_flight == 1 and runner.completed == 0
    assert shadow.calls[0][0].content.startswith("v2: why?")  # the shadow prompt, same variables
    shadow.gate.set()
    await rollout.drain()
    assert runner.completed == 1 and runner.in_flight == 0
    spans = {s.name: s for s in store.recent(10, kind="llm")}
    primary, mirrored = spans["primary"], spans["shadow"]
    assert primary.output == "the primary answer" and mirrored.output == "shadow says hi"
    pair = primary.attributes["shadow"]["pair"]
    assert mirrored.attributes["shadow_of"]["pair"] == pair
    assert mirrored.attributes["shadow_of"]["trace_id"] == reply.trace_id
    assert mirrored.trace_id == primary.trace_id  # traced beside the primary, in its trace
    assert mirrored.prompt_ref == "answer@v2" and primary.prompt_ref == "answer@v1"


async def test_the_shadow_does_not_change_the_primary_output(tmp_path: Path) -> None:
    without = FakeModel(name="test/primary", default="the primary answer")
    plain = Gateway(Settings(tracing={"enabled": False}), models={"primary": without})
    registry = PromptRegistry(make_prompts(tmp_path / "plain", "production: [answer@v1]\n"))
    baseline = await Rollout(plain, registry).acomplete("answer", {"question": "q"}, key="k", model="primary")
    shadow = Blocking(text="a very different answer")
    shadow.gate.set()
    rollout, _, primary = rollout_over(tmp_path, shadow)
    reply = await rollout.acomplete("answer", {"question": "q"}, key="k", model="primary")
    await rollout.drain()
    assert reply.text == baseline.text and reply.usage == baseline.usage
    assert primary.last_messages == without.last_messages


async def test_over_max_in_flight_shadows_are_dropped_not_queued(tmp_path: Path) -> None:
    shadow = Blocking()
    rollout, store, _ = rollout_over(tmp_path, shadow)
    for i in range(5):
        assert (await rollout.acomplete("answer", {"question": f"q{i}"}, key=f"u{i}", model="primary")).text
    runner = rollout._shadows["production/answer"]
    assert runner.in_flight == 2 and runner.dropped["max_in_flight"] == 3
    shadow.gate.set()
    await rollout.drain()
    assert runner.completed == 2 and len(shadow.calls) == 2  # the dropped three never ran later
    primaries = [s for s in store.recent(20, kind="llm") if s.name == "primary"]
    assert sum("shadow" in s.attributes for s in primaries) == 2


async def test_over_budget_shadows_are_dropped(tmp_path: Path) -> None:
    shadow = Blocking(cost=0.6)
    shadow.gate.set()
    rollout, _, _ = rollout_over(tmp_path, shadow)
    for i in range(4):
        await rollout.acomplete("answer", {"question": f"q{i}"}, key=f"u{i}", model="primary")
        await rollout.drain()
    runner = rollout._shadows["production/answer"]
    assert runner.completed == 2 and runner.spent_usd == pytest.approx(1.2) and runner.dropped["budget"] == 2


async def test_shadow_errors_never_surface(tmp_path: Path) -> None:
    shadow = Blocking(fail=True)
    shadow.gate.set()
    rollout, store, _ = rollout_over(tmp_path, shadow)
    reply = await rollout.acomplete("answer", {"question": "q"}, key="k", model="primary")
    await rollout.drain()
    assert reply.text == "the primary answer"
    runner = rollout._shadows["production/answer"]
    assert runner.failed == 1 and runner.completed == 0
    failed = next(s for s in store.recent(10, kind="llm") if s.name == "shadow")
    assert failed.status == "error" and "shadow is down" in (failed.error or "")


def test_sampling_is_sticky_by_key_and_near_the_rate() -> None:
    runner = ShadowRunner(ShadowSpec(route="x", sample=0.2, max_in_flight=100_000), target="x")
    chosen = {f"k{i}" for i in range(10_000) if runner.reserve(f"k{i}") is not None}
    sd = math.sqrt(10_000 * 0.2 * 0.8)
    assert abs(len(chosen) - 2000) <= 4 * sd
    again = ShadowRunner(ShadowSpec(route="x", sample=0.2, max_in_flight=100_000), target="x")
    assert {k for k in list(chosen)[:200] if again.reserve(k) is None} == set()


# -- a route's shadow (configs/aiapp.yaml), through the gateway layer ---------------------------

MODELS: dict[str, object] = {}


@register_provider("rollout-test")
def _model(deployment: Deployment, prices: PriceTable) -> object:
    return MODELS[deployment.model]


@pytest.fixture
def models() -> dict[str, object]:
    MODELS.clear()
    yield MODELS
    MODELS.clear()


def _settings(shadow: dict[str, object]) -> Settings:
    return Settings(
        routes={
            "main": Route(
                deployments=[Deployment(model="main", provider="rollout-test")], shadow=ShadowSpec(**shadow)
            ),
            "cand": Route(deployments=[Deployment(model="cand", provider="rollout-test")]),
        }
    )


async def test_a_route_shadow_mirrors_after_the_answer_and_links_the_traces(
    tmp_path: Path, models: dict[str, object]
) -> None:
    blocking = Blocking(text="candidate reply")
    models.update(main=FakeModel(name="main", default="main reply"), cand=blocking)
    store = TraceStore(tmp_path / "t.db")
    gw = Gateway(_settings({"route": "cand", "max_in_flight": 1}), store=store)
    reply = await gw.acomplete("hello", model="main")
    assert reply.text == "main reply"
    await asyncio.wait_for(blocking.entered.wait(), 10)
    assert not blocking.gate.is_set()
    second = await gw.acomplete("again", model="main")  # one in flight: this one's shadow is dropped
    layer = gw.model("main")
    assert isinstance(layer, ShadowModel) and layer.runner.dropped["max_in_flight"] == 1
    blocking.gate.set()
    await layer.runner.drain()
    spans = store.recent(10, kind="llm")
    mains = [s for s in spans if s.name == "main"]
    cands = [s for s in spans if s.name == "cand"]
    assert len(cands) == 1 and cands[0].output == "candidate reply"
    assert cands[0].attributes["shadow_of"]["pair"] == next(
        s.attributes["shadow"]["pair"] for s in mains if "shadow" in s.attributes
    )
    assert second.text == "main reply"


async def test_a_route_shadow_naming_an_unknown_route_is_a_config_error(models: dict[str, object]) -> None:
    models.update(main=FakeModel(name="main", default="x"))
    gw = Gateway(_settings({"route": "nowhere"}))
    with pytest.raises(
        ConfigError, match=r"routes\.main\.shadow\.route: shadow route .nowhere. is not defined"
    ):
        gw.model("main")


async def test_a_streamed_primary_finishes_while_its_route_shadow_is_blocked(
    tmp_path: Path, models: dict[str, object]
) -> None:
    blocking = Blocking(text="candidate reply")
    models.update(main=FakeModel(name="main", default="streamed main reply"), cand=blocking)
    gw = Gateway(_settings({"route": "cand"}), store=TraceStore(tmp_path / "t.db"))
    text = "".join([c.delta async for c in gw.astream("hello", model="main")])
    assert text == "streamed main reply"
    await asyncio.wait_for(blocking.entered.wait(), 10)
    assert not blocking.gate.is_set()
    layer = gw.model("main")
    assert isinstance(layer, ShadowModel) and layer.runner.in_flight == 1
    blocking.gate.set()
    await layer.runner.drain()
    assert layer.runner.completed == 1


async def test_a_primary_that_fails_launches_no_shadow(tmp_path: Path, models: dict[str, object]) -> None:
    from aiapp.errors import ProviderServerError

    blocking = Blocking()
    models.update(main=FakeModel(name="main", default=ProviderServerError("down", status=500)), cand=blocking)
    gw = Gateway(_settings({"route": "cand"}), store=TraceStore(tmp_path / "t.db"))
    with pytest.raises(ProviderServerError):
        await gw.acomplete("hello", model="main")
    layer = gw.model("main")
    assert isinstance(layer, ShadowModel) and layer.runner.in_flight == 0 and blocking.calls == []


async def test_a_cancelled_primary_gives_its_shadow_slot_back(tmp_path: Path) -> None:
    shadow = Blocking()
    store = TraceStore(tmp_path / "traces.db")
    slow_primary = Blocking(text="never")
    gw = Gateway(Settings(), models={"primary": slow_primary, "shadow": shadow}, store=store)
    rollout = Rollout(gw, PromptRegistry(make_prompts(tmp_path / "prompts", LABELS)))
    task = asyncio.ensure_future(rollout.acomplete("answer", {"question": "q"}, key="k", model="primary"))
    await asyncio.wait_for(slow_primary.entered.wait(), 10)
    runner = rollout._shadows["production/answer"]
    assert runner.in_flight == 1  # reserved while the primary runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runner.in_flight == 0 and shadow.calls == []


async def test_a_shadow_that_cannot_render_is_dropped_quietly(tmp_path: Path) -> None:
    shadow = Blocking()
    rollout, _, _ = rollout_over(tmp_path, shadow)
    v2 = tmp_path / "prompts" / "answer" / "v2.yaml"
    v2.write_text(v2.read_text().replace("variables:\n", "variables:\n  extra: {type: string}\n"))
    rollout.registry = PromptRegistry(tmp_path / "prompts")  # v2 now needs a variable v1 does not
    reply = await rollout.acomplete("answer", {"question": "q"}, key="k", model="primary")
    assert reply.text == "the primary answer"
    runner = rollout._shadows["production/answer"]
    assert runner.in_flight == 0 and shadow.calls == []
