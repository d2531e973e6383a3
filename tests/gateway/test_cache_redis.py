"""The Redis cache backend against a real redis-server started by the test setup (see conftest)."""

from __future__ import annotations

import pytest

from aiapp.config import CacheSettings, Settings
from aiapp.errors import ReplayMissError
from aiapp.gateway import Gateway
from aiapp.gateway.cache import RedisCacheStore
from aiapp.gateway.cache._redis import PREFIX, safe_url
from aiapp.testing import FakeModel

pytest_plugins = ["gateway_fixtures"]

redis = pytest.importorskip("redis", reason="the redis package (aiapp[redis]) is not installed")


def gateway(url: str, fake: FakeModel, **cache: object) -> Gateway:
    settings = Settings(cache=CacheSettings.model_validate({"backend": "redis", "url": url, **cache}))
    return Gateway(settings, models={"r": fake})


def test_redis_serves_repeats_with_expiry(flushed: str) -> None:
    fake = FakeModel(["from the model"])
    gw = gateway(flushed, fake, ttl_s=300)
    gw.complete("q", model="r")
    hit = gw.complete("q", model="r")
    assert hit.cache_hit and hit.text == "from the model" and fake.call_count == 1
    client = redis.Redis.from_url(flushed)
    [key] = client.keys(PREFIX + "*")
    assert 0 < client.pttl(key) <= 300_000
    client.close()


def test_redis_entries_are_shared_by_gateways(flushed: str) -> None:
    gateway(flushed, FakeModel(["shared"])).complete("q", model="r")
    other = gateway(flushed, FakeModel())  # a second process would see the same
    assert other.complete("q", model="r").text == "shared"


def test_record_and_replay_through_redis(flushed: str) -> None:
    gateway(flushed, FakeModel(["recorded"]), mode="record").complete("q", model="r")
    client = redis.Redis.from_url(flushed)
    [key] = client.keys(PREFIX + "*")
    assert client.pttl(key) == -1  # recordings never expire
    client.close()
    replay = gateway(flushed, FakeModel(), mode="replay")
    assert replay.complete("q", model="r").text == "recorded"
    with pytest.raises(ReplayMissError):
        replay.complete("something new", model="r")


def test_an_unreachable_redis_degrades_to_calling_the_model() -> None:
    fake = FakeModel(default="answered anyway")
    gw = gateway("redis://127.0.0.1:1/0", fake)
    reply = gw.complete("q", model="r")
    assert reply.text == "answered anyway" and not reply.cache_hit
    [span] = gw.tracer.store.trace(reply.trace_id)  # type: ignore[union-attr,arg-type]
    assert "cache_error" in span.attributes


def test_store_round_trip_and_safe_url(flushed: str) -> None:
    store = RedisCacheStore(flushed)
    assert store.ping()
    store.put("k", "välue", ttl_s=None)
    assert store.get("k") == "välue" and store.get("missing") is None
    store.close()
    assert safe_url("redis://user:secret@host:6380/1") == "redis://user:***@host:6380/1"
    assert "secret" not in repr(RedisCacheStore("redis://:secret@h:1/0"))
