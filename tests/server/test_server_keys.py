"""Virtual keys through `aiapp serve` with the openai client (401/403/429/402, revoke, expiry), and
Redis going away under keys, limits and budgets: an OpenAI-shaped 503 and a /ready that says so."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from serve_process import free_port

from aiapp.config import Budget, Deployment, Price, Route, Settings
from aiapp.gateway import Gateway, ManualClock
from aiapp.server import ServerSettings, create_app
from aiapp.server._keys import KeyStore
from aiapp.testing import StubServer

if TYPE_CHECKING:
    from server_fixtures import Served

pytest_plugins = ["server_fixtures"]

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def settings(base_url: str, home: Path, *, redis_url: str | None = None) -> Settings:
    def dep(model: str) -> Deployment:
        return Deployment(model=f"openai/{model}", api_base=base_url, timeout_s=10)

    return Settings(
        default_route="stub",
        routes={
            "stub": Route(deployments=[dep("stub-model")]),
            "other": Route(deployments=[dep("other-model")]),
            "capped": Route(deployments=[dep("stub-model")], budget=Budget(limit_usd=1.0, window="total")),
        },
        pricing={"openai/stub-model": Price(input_per_mtok=0.0, output_per_mtok=1000.0)},  # $0.001/token
        redis_url=redis_url,
        home=home,
    )


def serve(gateway: Gateway, keys: KeyStore | None) -> Served:
    from server_fixtures import Served

    return Served(create_app(gateway, settings=ServerSettings(), keys=keys, close_gateway=True)).start()


def client(served: Served, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=key or "", max_retries=0)


@pytest.fixture
def keyed(stub: StubServer, tmp_path: Path) -> Iterator[tuple[Served, KeyStore]]:
    clock = ManualClock(start=time.time())  # the key store's expiry and rate windows
    keys = KeyStore(tmp_path, clock=clock)
    served = serve(Gateway(settings(stub.base_url, tmp_path)), keys)
    yield served, keys
    served.stop()


def test_no_key_or_a_wrong_key_is_401(keyed: tuple[Served, KeyStore]) -> None:
    served, keys = keyed
    _, raw = keys.create_key("team-a")
    response = httpx.post(served.url + "/v1/chat/completions", json={"model": "stub", "messages": MESSAGES})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    for bad in ("sk-nope", raw[:-3] + "xyz"):
        with pytest.raises(openai.AuthenticationError):
            client(served, bad).chat.completions.create(model="stub", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        client(served, "sk-nope").models.list()
    reply = client(served, raw).chat.completions.create(model="stub", messages=MESSAGES)
    assert reply.choices[0].message.content


def test_a_route_the_key_may_not_use_is_403_and_hidden_from_models(
    keyed: tuple[Served, KeyStore], stub: StubServer
) -> None:
    served, keys = keyed
    _, raw = keys.create_key("narrow", routes=["stub"])
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(served, raw).chat.completions.create(model="other", messages=MESSAGES)
    assert info.value.code == "route_not_allowed"
    assert not [r for r in stub.requests("chat") if r["model"] == "other-model"]  # nothing went upstream
    assert [m.id for m in client(served, raw).models.list().data] == ["stub"]


def test_over_the_key_rpm_is_429_with_retry_after(keyed: tuple[Served, KeyStore]) -> None:
    served, keys = keyed
    _, raw = keys.create_key("slow", rpm=2)
    for _ in range(2):
        client(served, raw).chat.completions.create(model="stub", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as info:
        client(served, raw).chat.completions.create(model="stub", messages=MESSAGES)
    assert info.value.code == "rate_limit_exceeded"
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    keys.clock.advance(61)  # type: ignore[attr-defined]
    client(served, raw).chat.completions.create(model="stub", messages=MESSAGES)


def test_over_the_key_budget_is_402_before_anything_is_sent(
    keyed: tuple[Served, KeyStore], stub: StubServer
) -> None:
    served, keys = keyed
    _, raw = keys.create_key("paying", budget_usd=0.02)  # max_tokens=10 reserves $0.01 a call
    sent_before = len(stub.requests("chat"))
    served_calls = 0
    with pytest.raises(openai.APIStatusError) as info:
        for _ in range(10):
            client(served, raw).chat.completions.create(model="stub", messages=MESSAGES, max_tokens=10)
            served_calls += 1
    assert info.value.status_code == 402
    assert info.value.code == "budget_exceeded" and "budget" in str(info.value)
    assert 1 <= served_calls < 10
    assert len(stub.requests("chat")) - sent_before == served_calls  # the refused call never left
    # a stream is refused the same way, before its first byte
    with pytest.raises(openai.APIStatusError) as streamed:
        list(client(served, raw).chat.completions.create(model="stub", messages=MESSAGES, stream=True))
    assert streamed.value.status_code == 402


def test_revoke_takes_effect_at_once(keyed: tuple[Served, KeyStore], tmp_path: Path) -> None:
    served, keys = keyed
    _, raw = keys.create_key("leaver")
    client(served, raw).chat.completions.create(model="stub", messages=MESSAGES)
    cli = KeyStore(tmp_path)  # `aiapp keys revoke` in another process
    cli.revoke("leaver")
    cli.close()
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        client(served, raw).chat.completions.create(model="stub", messages=MESSAGES)


def test_an_expired_key_is_refused(keyed: tuple[Served, KeyStore]) -> None:
    served, keys = keyed
    _, raw = keys.create_key("temp", expires_in_s=3600)
    client(served, raw).chat.completions.create(model="stub", messages=MESSAGES)
    keys.clock.advance(3601)  # type: ignore[attr-defined]
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client(served, raw).chat.completions.create(model="stub", messages=MESSAGES)


# -- Redis going away ---------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own, so the test can stop it."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (bash scripts/services.sh installs it)")
        pytest.importorskip("redis")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    break
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def assert_redis_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("service_unavailable", "redis_unavailable")
    assert "cannot reach" in error["message"] and "redis://127.0.0.1" in error["message"]
    assert "Traceback" not in response.text


def test_redis_stopping_under_keys_and_budgets_is_a_503(stub: StubServer, tmp_path: Path) -> None:
    redis_server = PrivateRedis(tmp_path)
    try:
        keys = KeyStore(tmp_path, redis_url=redis_server.url)
        _, raw = keys.create_key("team-r", budget_usd=5.0, rpm=100)
        served = serve(Gateway(settings(stub.base_url, tmp_path, redis_url=redis_server.url)), keys)
        try:
            headers = {"authorization": f"Bearer {raw}"}
            body = {"model": "stub", "messages": MESSAGES, "max_tokens": 10}
            assert (
                httpx.post(served.url + "/v1/chat/completions", json=body, headers=headers).status_code == 200
            )
            ready = httpx.get(served.url + "/ready").json()
            assert ready["checks"]["redis"] == "ok" and ready["checks"]["keys"] == "ok"

            redis_server.stop()
            assert_redis_503(httpx.post(served.url + "/v1/chat/completions", json=body, headers=headers))
            assert_redis_503(
                httpx.post(
                    served.url + "/v1/chat/completions", json={**body, "stream": True}, headers=headers
                )
            )
            ready_down = httpx.get(served.url + "/ready")
            assert ready_down.status_code == 503 and ready_down.json()["status"] == "not ready"
            assert ready_down.json()["checks"]["redis"].startswith("Redis is down: cannot reach redis://")
            assert httpx.get(served.url + "/health").status_code == 200  # alive, just not ready
        finally:
            served.stop()
    finally:
        redis_server.stop()


def test_a_closed_redis_port_under_an_open_server_budget_is_a_503(stub: StubServer, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    served = serve(Gateway(settings(stub.base_url, tmp_path, redis_url=url)), None)
    try:
        body = {"model": "capped", "messages": MESSAGES, "max_tokens": 10}  # a route budget in Redis
        assert_redis_503(httpx.post(served.url + "/v1/chat/completions", json=body))
        with pytest.raises(openai.APIStatusError) as info:  # the openai client sees the same
            client(served, "unused").chat.completions.create(model="capped", messages=MESSAGES)
        assert info.value.status_code == 503 and "cannot reach" in str(info.value)
        ready = httpx.get(served.url + "/ready")
        assert ready.status_code == 503 and "Redis is down" in ready.json()["checks"]["redis"]
        assert not stub.requests("chat")  # nothing was sent that could not be paid for
    finally:
        served.stop()


async def test_redis_down_under_a_key_rate_limit_maps_to_a_503(tmp_path: Path) -> None:
    from aiapp.errors import ConfigError
    from aiapp.server._keys import KeyRecord
    from aiapp.server._wire import wire_error

    pytest.importorskip("redis")
    store = KeyStore(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    record = KeyRecord("0123456789ab", "r", None, None, 5, None, None, 0.0, False)
    with pytest.raises(ConfigError) as info:  # the rpm check lives in Redis: refused, never skipped
        await store.admit(record, "stub", 10)
    error = wire_error(info.value)
    assert (error.status, error.type, error.code) == (503, "service_unavailable", "redis_unavailable")
    assert error.headers() == {"retry-after": "1"}
    with pytest.raises(ConfigError):
        await store.authenticate("Bearer sk-aiapp-0123456789ab_" + "x" * 43)
    assert not await store.ping()


def test_there_is_no_key_management_over_http(keyed: tuple[Served, KeyStore]) -> None:
    served, keys = keyed
    _, raw = keys.create_key("curious")
    headers = {"authorization": f"Bearer {raw}"}
    for path in ("/keys", "/v1/keys", "/key/generate", "/admin/keys"):
        response = httpx.post(served.url + path, json={"name": "x"}, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert [r.name for r in keys.list_keys()] == ["curious"]


def test_a_misconfigured_route_is_a_500_naming_the_field_and_the_server_keeps_serving(
    stub: StubServer, tmp_path: Path
) -> None:
    config = settings(stub.base_url, tmp_path)
    config.routes["broken"] = Route(deployments=[Deployment(model="x/y", provider="nosuch")])
    served = serve(Gateway(config), None)
    try:
        for stream in (False, True):
            body = {"model": "broken", "messages": MESSAGES, "stream": stream}
            response = httpx.post(served.url + "/v1/chat/completions", json=body)
            assert response.status_code == 500, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("server_error", "server_misconfigured")
            assert "unknown provider 'nosuch'" in error["message"] and "provider" in error["message"]
        reply = client(served, "unused").chat.completions.create(model="stub", messages=MESSAGES)
        assert reply.choices[0].message.content
    finally:
        served.stop()
