"""The real `aiapp serve` command: graceful SIGTERM, and two workers sharing one budget through Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serve_process import ServeProcess, stub_config

from aiapp.testing import StubServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
pytest_plugins = ["gateway_fixtures"]


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigterm_finishes_the_stream_in_flight_and_exits_0(stub: StubServer, tmp_path: Path) -> None:
    config = stub_config(tmp_path / "aiapp.yaml", stub.base_url)
    with ServeProcess(config, tmp_path / "home", "--no-auth", "--graceful-timeout", "60") as serve:
        serve.wait_ready()
        stub.queue_replies("alpha beta gamma delta epsilon")
        stub.inject("hold", endpoint="chat", seconds=60)
        body = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        try:
            with (
                httpx.Client(timeout=60) as http,
                http.stream("POST", serve.url + "/v1/chat/completions", json=body) as response,
            ):
                assert response.status_code == 200
                lines = response.iter_lines()
                assert next(lines).startswith("data: ")
                _wait(lambda: stub.stats()["holding"] == 1, 10, "the stub to hold the stream")

                serve.proc.send_signal(signal.SIGTERM)
                _wait(lambda: not serve.accepting(), 30, "the server to stop accepting connections")
                assert serve.proc.poll() is None, "exited with a stream in flight"
                stub.release()
                rest = list(lines)
            events = [line[6:] for line in rest if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert not any("error" in c for c in chunks)
            assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
        finally:
            stub.release()
        assert serve.proc.wait(timeout=60) == 0, serve.output()


def _server_spans(home: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(home / "traces.db") as db:
        rows = db.execute("SELECT attributes, status FROM spans WHERE kind = 'server'").fetchall()
    return [{"attributes": json.loads(a or "{}"), "status": s} for a, s in rows]


def test_two_workers_share_one_key_budget_through_redis(
    stub: StubServer, flushed: str, tmp_path: Path
) -> None:
    from aiapp.gateway.budgets import RedisBudgetLedger
    from aiapp.server._keys import KeyStore

    home = tmp_path / "home"
    budget, estimate = 0.25, 0.01  # max_tokens=10 at $0.001 per output token reserves $0.01
    config = stub_config(tmp_path / "aiapp.yaml", stub.base_url, redis_url=flushed)
    keys = KeyStore(home, redis_url=flushed)
    record, raw = keys.create_key("team-shared", budget_usd=budget)
    keys.close()
    with ServeProcess(config, home, "--workers", "2") as serve:
        serve.wait_ready()
        _wait(lambda: len(serve.children()) == 2, 60, "two workers")
        stub.set_latency(20)  # calls overlap, like a real upstream

        async def burst(n: int) -> tuple[list[float], int]:
            costs: list[float] = []
            refused = 0
            async with openai.AsyncOpenAI(base_url=serve.url + "/v1", api_key=raw, max_retries=0) as client:

                async def one(i: int) -> None:
                    nonlocal refused
                    try:
                        reply = await client.chat.completions.create(
                            model="stub",
                            messages=[{"role": "user", "content": f"q{i} a b c d e f"}],  # 9 tokens back
                            max_tokens=10,
                        )
                    except openai.APIStatusError as exc:
                        assert exc.status_code == 402, exc
                        assert "budget" in str(exc)
                        refused += 1
                        return
                    assert reply.usage is not None
                    costs.append(reply.usage.completion_tokens * 0.001)

                await asyncio.gather(*(one(i) for i in range(n)))
            return costs, refused

        costs, refused = asyncio.run(burst(50))
        ledger = RedisBudgetLedger(flushed)
        spent, reserved = ledger.spent("key", record.budget_key, "total")
        print(f"2 workers: {len(costs)} of 50 served, spent ${spent:.4f} of ${budget}")
        assert refused > 0 and len(costs) + refused == 50  # the budget binds, every call answered
        assert spent == pytest.approx(sum(costs))  # every served call recorded once
        assert spent <= budget + estimate
        assert reserved == pytest.approx(0.0)

        # both workers served: each server span records the process that wrote it (spans are
        # committed in batches, within a second)
        workers = set(serve.children())
        _wait(
            lambda: {s["attributes"].get("worker_pid") for s in _server_spans(home)} == workers, 15, "spans"
        )

        # a worker killed mid-traffic loses none of the spend already recorded
        keys = KeyStore(home, redis_url=flushed)
        _, raw2 = keys.create_key("team-kill", budget_usd=100.0)
        keys.close()
        record2 = next(r for r in KeyStore(home, redis_url=flushed).list_keys() if r.name == "team-kill")

        async def traffic(seconds: float) -> list[float]:
            served: list[float] = []
            end = time.monotonic() + seconds
            async with openai.AsyncOpenAI(base_url=serve.url + "/v1", api_key=raw2, max_retries=0) as client:

                async def loop() -> None:
                    while time.monotonic() < end:
                        try:
                            reply = await client.chat.completions.create(
                                model="stub", messages=[{"role": "user", "content": "k"}], max_tokens=10
                            )
                        except (openai.APIConnectionError, openai.InternalServerError):
                            continue  # the call the killed worker was serving
                        assert reply.usage is not None
                        served.append(reply.usage.completion_tokens * 0.001)

                await asyncio.gather(*(loop() for _ in range(4)))
            return served

        async def kill_midway() -> list[float]:
            task = asyncio.create_task(traffic(3.0))
            await asyncio.sleep(1.0)
            os.kill(serve.children()[0], signal.SIGKILL)
            return await task

        served = asyncio.run(kill_midway())
        spent2, _ = ledger.spent("key", record2.budget_key, "total")
        assert served, "no call was served around the kill"
        # every reply a client got is recorded; at most the 4 in flight were recorded unanswered
        assert sum(served) - 1e-9 <= spent2 <= sum(served) + 4 * estimate
        assert serve.proc.poll() is None  # the supervisor keeps serving
