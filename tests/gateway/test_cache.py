"""The exact cache and record/replay, through the gateway (SQLite under AIAPP_HOME)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiapp.config import CacheSettings, Deployment, Route, Settings, load_settings
from aiapp.errors import ConfigError, ReplayMissError
from aiapp.gateway import Gateway, ManualClock, PromptRef
from aiapp.gateway.cache import CachedModel, SQLiteCacheStore, request_key
from aiapp.testing import FakeModel
from aiapp.types import CallOptions, Completion, Message, ToolCall, Usage

pytest_plugins = ["gateway_fixtures"]


def cached(models: dict[str, FakeModel], clock: ManualClock | None = None, **cache: object) -> Gateway:
    settings = Settings(cache=CacheSettings.model_validate(cache))
    return Gateway(settings, models=dict(models), clock=clock)  # type: ignore[arg-type]


def paid(text: str, cost: float = 0.002) -> Completion:
    return Completion(text=text, usage=Usage(input_tokens=10, output_tokens=5, cost_usd=cost))


def test_an_exact_repeat_is_served_from_the_cache_and_costs_nothing(aiapp_home: Path) -> None:
    fake = FakeModel([paid("Paris.")])  # one reply only: a second provider call would fail
    gw = cached({"geo": fake})
    first = gw.complete("Capital of France?", model="geo", temperature=0)
    second = gw.complete("Capital of France?", model="geo", temperature=0)
    assert (first.text, second.text) == ("Paris.", "Paris.")
    assert fake.call_count == 1
    assert not first.cache_hit and second.cache_hit
    assert second.usage.cost_usd == 0.0 and second.attempts == 0
    store = gw.tracer.store
    assert store is not None
    [span] = store.trace(second.trace_id)  # type: ignore[arg-type]
    assert span.cache_hit is True and span.attributes["cache"] == "hit"
    assert span.attributes["cache_saved_usd"] == pytest.approx(0.002)
    assert (aiapp_home / "cache.db").exists()


def test_the_key_covers_messages_parameters_route_and_prompt_version() -> None:
    fake = FakeModel(default="reply")
    gw = cached({"a": fake, "b": fake})
    v1 = PromptRef("support@v1", "h1")
    gw.complete("q", model="a", temperature=0, prompt_ref=v1)
    calls = fake.call_count
    gw.complete("q", model="a", temperature=0, prompt_ref=v1, timeout_s=5)  # timeout: not part of the key
    assert fake.call_count == calls
    for variant in (
        dict(prompt="q", model="a", temperature=0.7, prompt_ref=v1),
        dict(prompt="q", model="a", temperature=0, max_tokens=5, prompt_ref=v1),
        dict(prompt="q?", model="a", temperature=0, prompt_ref=v1),
        dict(
            prompt=[Message.system("Be brief."), Message.user("q")], model="a", temperature=0, prompt_ref=v1
        ),
        dict(prompt="q", model="a", temperature=0, prompt_ref=PromptRef("support@v2", "h2")),
        dict(prompt="q", model="a", temperature=0, prompt_ref=PromptRef("support@v1", "edited")),
        dict(prompt="q", model="a", temperature=0),
        dict(prompt="q", model="b", temperature=0, prompt_ref=v1),
    ):
        before = fake.call_count
        gw.complete(**variant)  # type: ignore[arg-type]
        assert fake.call_count == before + 1, variant


def test_keys_are_stable_and_ignore_unset_defaults() -> None:
    messages = [Message.user("hi")]
    assert request_key("id", messages, None, None) == request_key("id", messages, CallOptions(), None)
    assert request_key("id", messages, None, None) != request_key("id2", messages, None, None)


def test_entries_expire_after_their_ttl(clock: ManualClock) -> None:
    fake = FakeModel(default="reply")
    gw = cached({"r": fake}, clock=clock, ttl_s=60)
    gw.complete("q", model="r")
    clock.advance(59)
    assert gw.complete("q", model="r").cache_hit
    clock.advance(2)
    assert not gw.complete("q", model="r").cache_hit
    assert fake.call_count == 2


def test_the_cache_survives_a_restart() -> None:
    gw = cached({"r": FakeModel(["once"])})
    gw.complete("q", model="r")
    gw.close()
    again = cached({"r": FakeModel()})  # no replies queued: only the cache can answer
    assert again.complete("q", model="r").text == "once"


def test_metadata_can_bypass_or_refresh_the_cache() -> None:
    fake = FakeModel(["one", "two", "three"])
    gw = cached({"r": fake})
    assert gw.complete("q", model="r").text == "one"
    assert gw.complete("q", model="r", metadata={"cache": False}).text == "two"
    assert gw.complete("q", model="r").text == "one"
    assert gw.complete("q", model="r", metadata={"cache": "refresh"}).text == "three"
    assert gw.complete("q", model="r").text == "three"


def test_tool_call_replies_are_cached_whole() -> None:
    call = ToolCall(id="c1", name="search", arguments='{"q": "x"}')
    gw = cached({"r": FakeModel([[call]])})
    gw.complete("find x", model="r")
    hit = gw.complete("find x", model="r")
    assert hit.cache_hit and hit.tool_calls == (call,) and hit.finish_reason == "tool_calls"


def test_streams_are_stored_and_replayed() -> None:
    fake = FakeModel(["a streamed reply"])
    gw = cached({"r": fake})
    assert "".join(c.delta for c in gw.stream("q", model="r")) == "a streamed reply"
    assert "".join(c.delta for c in gw.stream("q", model="r")) == "a streamed reply"
    [span] = gw.tracer.store.recent(1)  # type: ignore[union-attr]
    assert span.cache_hit is True and span.output == "a streamed reply"
    assert gw.complete("q", model="r").cache_hit
    assert fake.call_count == 1


async def test_async_calls_use_the_cache() -> None:
    fake = FakeModel(["async reply"])
    gw = cached({"r": fake})
    await gw.acomplete("q", model="r")
    assert (await gw.acomplete("q", model="r")).cache_hit
    assert "".join([c.delta async for c in gw.astream("q", model="r")]) == "async reply"
    assert fake.call_count == 1


def test_a_route_can_opt_out(scripted: dict[str, FakeModel]) -> None:
    scripted["x/m"] = FakeModel(default="fresh")
    route = Route(deployments=[Deployment(model="x/m", provider="fixture-scripted")], cache=False)
    gw = Gateway(Settings(routes={"live": route}, cache=CacheSettings()))
    gw.complete("q", model="live")
    assert not gw.complete("q", model="live").cache_hit
    assert scripted["x/m"].call_count == 2


def test_no_cache_section_means_no_cache() -> None:
    fake = FakeModel(default="x")
    gw = Gateway(Settings(), models={"r": fake})
    gw.complete("q", model="r")
    gw.complete("q", model="r")
    assert fake.call_count == 2


# -- record / replay ------------------------------------------------------------------------------


def test_record_then_replay_runs_without_the_model(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings.db"
    recorder_model = FakeModel(["first answer", "second answer", "refreshed"])
    recorder = cached({"r": recorder_model}, mode="record", path=str(recordings))
    recorder.complete("question one", model="r")
    recorder.complete("question two", model="r")
    assert recorder.complete("question one", model="r").text == "refreshed"  # record never reads
    recorder.close()

    replay_model = FakeModel()  # would raise if called
    replayer = cached({"r": replay_model}, mode="replay", path=str(recordings))
    assert replayer.complete("question one", model="r").text == "refreshed"
    assert replayer.complete("question two", model="r").text == "second answer"
    assert replay_model.call_count == 0


def test_a_replay_miss_names_the_request() -> None:
    fake = FakeModel(default="never")
    gw = cached({"support": fake}, mode="replay")
    question = "How do I rotate my API key without downtime for the production cluster?"
    with pytest.raises(ReplayMissError) as info:
        gw.complete([Message.system("You help."), Message.user(question)], model="support")
    err = info.value
    assert err.route == "support" and len(err.key) == 12
    assert err.preview.startswith("How do I rotate my API key")
    assert "route 'support'" in str(err) and err.key in str(err) and "AIAPP_CACHE_MODE=record" in str(err)
    assert fake.call_count == 0
    [span] = gw.tracer.store.recent(1)  # type: ignore[union-attr]
    assert span.status == "error" and "ReplayMissError" in (span.error or "")


def test_replay_misses_fail_streams_too() -> None:
    gw = cached({"r": FakeModel(default="never")}, mode="replay")
    with pytest.raises(ReplayMissError):
        list(gw.stream("not recorded", model="r"))


def test_cache_mode_comes_from_the_environment() -> None:
    assert load_settings(env={"AIAPP_CACHE_MODE": "replay"}).cache.mode == "replay"  # type: ignore[union-attr]
    assert load_settings(env={}).cache is None
    with pytest.raises(ConfigError, match=r"cache\.mode"):
        load_settings(env={"AIAPP_CACHE_MODE": "sometimes"})


def test_redis_backend_needs_a_url() -> None:
    with pytest.raises(ValueError, match="needs a url"):
        CacheSettings(backend="redis")


# -- a broken backend degrades to a miss ------------------------------------------------------------


class BrokenStore:
    def get(self, key: str) -> str | None:
        raise ConnectionError("cache server unreachable")

    def put(self, key: str, value: str, *, ttl_s: float | None) -> None:
        raise ConnectionError("cache server unreachable")

    def close(self) -> None:
        pass


def test_a_broken_cache_backend_never_fails_a_call() -> None:
    fake = FakeModel(default="still answers")
    model = CachedModel(fake, route="r", identity="r", store=BrokenStore())
    gw = Gateway(Settings(), models={"r": model})
    reply = gw.complete("q", model="r")
    assert reply.text == "still answers" and not reply.cache_hit
    [span] = gw.tracer.store.trace(reply.trace_id)  # type: ignore[union-attr,arg-type]
    assert "cache server unreachable" in span.attributes["cache_error"]


def test_sqlite_store_replaces_atomically_and_purges(tmp_path: Path, clock: ManualClock) -> None:
    store = SQLiteCacheStore(tmp_path / "c.db", clock=clock)
    store.put("k", "v1", ttl_s=None)
    store.put("k", "v2", ttl_s=None)
    store.put("old", "x", ttl_s=1)
    assert store.get("k") == "v2" and len(store) == 2
    clock.advance(2)
    assert store.get("old") is None and store.purge_expired() == 1 and len(store) == 1
    store.close()
    assert store.get("k") == "v2"  # reopens
