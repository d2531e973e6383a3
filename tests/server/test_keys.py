"""Virtual keys: hashed at rest, refused at once when revoked or expired, routes, rpm/tpm, budgets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from aiapp.config import Price, Settings
from aiapp.errors import BudgetExceededError, InputError
from aiapp.gateway import Gateway, ManualClock
from aiapp.server._keys import AuthFailure, KeyStore, parse_duration
from aiapp.testing import FakeModel
from aiapp.types import Completion, Usage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
pytest_plugins = ["gateway_fixtures"]


def bearer(raw: str) -> str:
    return f"Bearer {raw}"


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyStore:
    clock = ManualClock()
    if request.param == "sqlite":
        return KeyStore(tmp_path, clock=clock)
    redis = pytest.importorskip("redis")
    url: str = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return KeyStore(tmp_path, redis_url=url, clock=clock)


async def test_create_authenticate_list_revoke(store: KeyStore) -> None:
    record, raw = store.create_key("team-a", routes=["openai", "local"], budget_usd=5, rpm=60, tpm=100_000)
    assert raw.startswith("sk-aiapp-") and record.id in raw
    assert await store.authenticate(bearer(raw)) == record
    assert [r.name for r in store.list_keys()] == ["team-a"]
    assert store.allowed_routes(record, ["local", "openai", "judge"]) == ["local", "openai"]
    assert record.budget_metadata == {"budget_key": record.id, "budget_usd": 5.0, "budget_window": "total"}
    with pytest.raises(InputError, match="live key named 'team-a'"):
        store.create_key("team-a")
    [revoked] = store.revoke("team-a")
    assert revoked.revoked
    with pytest.raises(AuthFailure) as info:
        await store.authenticate(bearer(raw))  # at once: no stale cache
    assert info.value.status == 401 and "revoked" in info.value.message
    store.create_key("team-a")  # the name is free again


async def test_revoke_from_another_process_takes_effect_at_once(store: KeyStore, tmp_path: Path) -> None:
    _, raw = store.create_key("team-b")
    await store.authenticate(bearer(raw))  # cached now, where the store caches
    other = KeyStore(tmp_path, redis_url=store.redis_url)  # the CLI, in another process
    other.revoke("team-b")
    other.close()
    with pytest.raises(AuthFailure, match="revoked"):
        await store.authenticate(bearer(raw))


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic sk-aiapp-abc", "Bearer sk-other", "Bearer sk-aiapp-0123456789ab_" + "x" * 43],
)
async def test_missing_malformed_or_unknown_keys_are_401(store: KeyStore, header: str | None) -> None:
    with pytest.raises(AuthFailure) as info:
        await store.authenticate(header)
    assert (info.value.status, info.value.code) == (401, "invalid_api_key")


async def test_a_wrong_secret_for_a_real_id_is_401(store: KeyStore) -> None:
    _, raw = store.create_key("team-c")
    with pytest.raises(AuthFailure, match="no such key"):
        await store.authenticate(bearer(raw[:-4] + "AAAA"))


async def test_expired_keys_are_refused(store: KeyStore) -> None:
    _, raw = store.create_key("temp", expires_in_s=parse_duration("1h"))
    await store.authenticate(bearer(raw))
    store.clock.advance(3601)  # type: ignore[attr-defined]
    with pytest.raises(AuthFailure, match="expired") as info:
        await store.authenticate(bearer(raw))
    assert info.value.status == 401


async def test_a_route_the_key_may_not_use_is_403(store: KeyStore) -> None:
    record, _ = store.create_key("narrow", routes=["local"])
    await store.admit(record, "local", 10)
    with pytest.raises(AuthFailure) as info:
        await store.admit(record, "openai", 10)
    assert (info.value.status, info.value.code) == (403, "model_not_allowed")


async def test_rpm_is_429_with_retry_after(store: KeyStore) -> None:
    record, _ = store.create_key("slow", rpm=2)
    for _ in range(2):
        await store.settle(await store.admit(record, "local", 10), 5)
    with pytest.raises(AuthFailure) as info:
        await store.admit(record, "local", 10)
    err = info.value
    assert (err.status, err.code) == (429, "rate_limit_exceeded")
    assert err.retry_after is not None and 0 < err.retry_after <= 60
    store.clock.advance(61)  # type: ignore[attr-defined]
    await store.admit(record, "local", 10)


async def test_tpm_counts_settled_tokens(store: KeyStore) -> None:
    record, _ = store.create_key("tokens", tpm=100)
    admission = await store.admit(record, "local", 90)
    with pytest.raises(AuthFailure) as info:
        await store.admit(record, "local", 20)
    assert info.value.status == 429 and info.value.retry_after is not None
    await store.settle(admission, 30)  # it used fewer than estimated
    await store.admit(record, "local", 20)
    with pytest.raises(AuthFailure) as too_big:
        await store.admit(record, "local", 101)
    assert too_big.value.retry_after is None  # waiting will never help


async def test_ping(store: KeyStore) -> None:
    assert await store.ping()
    assert not await KeyStore(Path("/nonexistent"), redis_url="redis://127.0.0.1:1/0").ping()


def test_the_raw_key_is_not_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    _, raw = store.create_key("secret-team")
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))
    secret = raw.rsplit("_", 1)[1]
    assert b"secret-team" in data  # the file is the right one ...
    assert raw.encode() not in data and secret.encode() not in data  # ... and holds only a hash
    assert (tmp_path / "keys.db").stat().st_mode & 0o077 == 0


def test_bad_options_are_input_errors(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    for kwargs in ({"rpm": 0}, {"budget_usd": -1.0}, {"routes": []}):
        with pytest.raises(InputError):
            store.create_key("x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        store.create_key("bad name!")
    with pytest.raises(InputError):
        parse_duration("soon")
    assert parse_duration("30d") == 30 * 86400


async def test_a_key_budget_is_refused_before_spending_through_the_gateway(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    record, raw = store.create_key("paying", budget_usd=0.02)
    reply = Completion(text="ok", usage=Usage(input_tokens=1, output_tokens=5, cost_usd=0.008))
    fake = FakeModel(default=reply)
    price = Price(input_per_mtok=0.0, output_per_mtok=1000.0)  # max_tokens=10 reserves $0.01
    gw = Gateway(Settings(home=tmp_path, pricing={"fake/model": price}), models={"r": fake})
    key = await store.authenticate(bearer(raw))
    for _ in range(2):
        await gw.acomplete("hi", model="r", max_tokens=10, metadata=key.budget_metadata)
    with pytest.raises(BudgetExceededError) as info:  # $0.016 spent: another $0.01 does not fit
        await gw.acomplete("hi", model="r", max_tokens=10, metadata=key.budget_metadata)
    assert fake.call_count == 2 and info.value.scope == "key" and info.value.name == record.id
    from aiapp.gateway.budgets import open_ledger

    spent, _ = open_ledger(Settings(home=tmp_path)).spent("key", record.budget_key, "total")
    assert spent == pytest.approx(0.016)


def test_cli_create_list_revoke(tmp_path: Path, aiapp_home: Path) -> None:
    from typer.testing import CliRunner

    from aiapp.cli import app

    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--name",
            "team-a",
            "--routes",
            "local",
            "--budget-usd",
            "5",
            "--rpm",
            "60",
            "--tpm",
            "100000",
            "--expires",
            "30d",
            "--json",
        ],
    )
    assert made.exit_code == 0, made.output
    raw = json.loads(made.stdout)["key"]
    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0 and raw not in listed.output
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["status"], row["budget_usd"], row["spent_usd"]) == ("team-a", "live", 5.0, 0.0)
    assert runner.invoke(app, ["keys", "revoke", "team-a"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)[0]["status"] == "revoked"
    bad = runner.invoke(app, ["keys", "create", "--name", "x", "--routes", "nope"])
    assert bad.exit_code != 0


async def test_redis_records_are_cached_until_the_generation_moves(flushed: str, tmp_path: Path) -> None:
    import redis

    from aiapp.server._keys import GENERATION, REDIS_PREFIX

    store = KeyStore(tmp_path, redis_url=flushed, clock=ManualClock())
    record, raw = store.create_key("cached", rpm=5)
    assert (await store.authenticate(bearer(raw))).rpm == 5
    direct = redis.Redis.from_url(flushed)
    direct.hset(REDIS_PREFIX + "key:" + record.id, "rpm", "7")  # not through revoke: no new generation
    assert (await store.authenticate(bearer(raw))).rpm == 5  # served from memory: one GET, no HGETALL
    with pytest.raises(AuthFailure, match="no such key"):
        await store.authenticate(bearer(raw[:-4] + "AAAA"))  # the secret is still checked
    direct.incr(GENERATION)
    assert (await store.authenticate(bearer(raw))).rpm == 7  # re-read once the generation moved
    store.revoke("cached")
    with pytest.raises(AuthFailure, match="revoked"):
        await store.authenticate(bearer(raw))
    direct.close()
    await store.aclose()
