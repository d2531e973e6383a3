"""The Redis budget ledger against a real redis-server: atomic reserve, shared by processes, crash-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiapp.config import Budget, Price, Settings
from aiapp.errors import BudgetExceededError, ConfigError
from aiapp.gateway import Gateway, ManualClock
from aiapp.gateway.budgets import Claim, RedisBudgetLedger, open_ledger
from aiapp.testing import FakeModel
from aiapp.types import Completion, Usage

pytest_plugins = ["gateway_fixtures"]

redis = pytest.importorskip("redis", reason="the redis package (aiapp[redis]) is not installed")

WORKER = Path(__file__).with_name("budget_worker.py")
PRICE = Price(input_per_mtok=0.0, output_per_mtok=1000.0)  # max_tokens=10 reserves $0.01


def test_reserve_settle_release_and_refuse(flushed: str) -> None:
    clock = ManualClock()
    ledger = RedisBudgetLedger(flushed, clock=clock, hold_ttl_s=60)
    claims = [Claim("route", "paid", Budget(limit_usd=0.03)), Claim("key", "alice", Budget(limit_usd=1.0))]
    first = ledger.reserve(claims, 0.01)
    second = ledger.reserve(claims, 0.01)
    assert ledger.spent("route", "paid") == pytest.approx((0.0, 0.02))
    ledger.settle(first, 0.004)
    ledger.settle(first, 0.004)  # idempotent
    ledger.release(second)
    assert ledger.spent("route", "paid") == pytest.approx((0.004, 0.0))
    assert ledger.spent("key", "alice") == pytest.approx((0.004, 0.0))
    ledger.reserve(claims, 0.02)
    with pytest.raises(BudgetExceededError) as info:
        ledger.reserve(claims, 0.01)
    err = info.value
    assert (err.scope, err.name, err.limit_usd) == ("route", "paid", 0.03)
    assert err.spent_usd == pytest.approx(0.004) and err.reserved_usd == pytest.approx(0.02)
    assert ledger.spent("key", "alice") == pytest.approx((0.004, 0.02))  # the refusal held nothing


def test_holds_of_a_dead_call_lapse_but_spend_stays(flushed: str) -> None:
    clock = ManualClock()
    ledger = RedisBudgetLedger(flushed, clock=clock, hold_ttl_s=10)
    claims = [Claim("key", "bob", Budget(limit_usd=0.02, window="total"))]
    ledger.settle(ledger.reserve(claims, 0.01), 0.01)
    ledger.reserve(claims, 0.01)  # its process dies here
    with pytest.raises(BudgetExceededError):
        ledger.reserve(claims, 0.01)
    clock.advance(11)
    assert ledger.spent("key", "bob", "total") == pytest.approx((0.01, 0.0))
    ledger.reserve(claims, 0.01)  # the lapsed hold no longer counts


def test_unreachable_redis_refuses_instead_of_bypassing() -> None:
    ledger = RedisBudgetLedger("redis://:secret@127.0.0.1:1/0", timeout_s=0.2)
    with pytest.raises(ConfigError) as info:
        ledger.reserve([Claim("key", "k", Budget(limit_usd=1.0))], 0.01)
    assert "cannot reach the budget ledger" in str(info.value) and "secret" not in str(info.value)
    assert not ledger.ping()


def test_settings_select_the_redis_ledger(flushed: str, tmp_path: Path) -> None:
    assert isinstance(open_ledger(Settings(redis_url=flushed)), RedisBudgetLedger)
    assert not isinstance(open_ledger(Settings(home=tmp_path)), RedisBudgetLedger)


def test_a_call_budget_in_metadata_is_enforced_through_redis(flushed: str) -> None:
    fake = FakeModel(
        default=Completion(text="ok", usage=Usage(input_tokens=1, output_tokens=5, cost_usd=0.006))
    )
    settings = Settings(redis_url=flushed, pricing={"fake/model": PRICE})
    gw = Gateway(settings, models={"r": fake}, clock=ManualClock())
    meta = {"budget_key": "team", "budget_usd": 0.02}
    gw.complete("hi", model="r", max_tokens=10, metadata=meta)
    gw.complete("hi", model="r", max_tokens=10, metadata=meta)  # $0.012 spent; $0.01 more won't fit
    with pytest.raises(BudgetExceededError):
        gw.complete("hi", model="r", max_tokens=10, metadata=meta)
    assert fake.call_count == 2
    other = Gateway(settings, models={"r": FakeModel(default="ok")}, clock=ManualClock())  # another process
    with pytest.raises(BudgetExceededError):
        other.complete("hi", model="r", max_tokens=10, metadata=meta)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def test_two_processes_share_one_budget_under_concurrency(flushed: str, tmp_path: Path) -> None:
    budget, estimate = 0.25, 0.01
    start = time.time() + 3.0  # both processes are up and begin together
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "burst", flushed, "25", repr(start)],
            stdout=subprocess.PIPE,
            text=True,
            env={**_env(), "AIAPP_HOME": str(tmp_path / f"w{i}")},
        )
        for i in range(2)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        results.append(json.loads(out.strip().splitlines()[-1]))
    ok = sum(r["ok"] for r in results)
    paid = sum(c for r in results for c in r["costs"])
    spent, reserved = RedisBudgetLedger(flushed).spent("key", "team", "total")
    print(
        f"two processes: {ok} of 50 admitted, spent ${spent:.4f} of ${budget} (over by ${spent - budget:+.4f})"
    )
    assert sum(r["refused"] for r in results) > 0  # the budget binds
    assert spent == pytest.approx(paid)  # every admitted call is recorded, once
    assert spent <= budget + estimate
    assert reserved == pytest.approx(0.0)
    assert ok >= 25  # each costs at most the estimate: at least budget / estimate calls fit


def test_a_killed_worker_loses_no_recorded_spend(flushed: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "loop", flushed],
        stdout=subprocess.PIPE,
        text=True,
        env={**_env(), "AIAPP_HOME": str(tmp_path / "w")},
    )
    settled: list[float] = []
    try:
        assert proc.stdout is not None
        while len(settled) < 20:
            line = proc.stdout.readline()
            assert line, "the worker died before settling 20 calls"
            settled.append(float(line.split()[1]))
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-run: calls in flight, holds in Redis
        proc.wait(timeout=10)
    rest = proc.stdout.read() if proc.stdout else ""
    settled += [float(line.split()[1]) for line in rest.splitlines() if line.startswith("settled ")]
    ledger = RedisBudgetLedger(flushed, hold_ttl_s=2.0)
    spent, _ = ledger.spent("key", "killed", "total")
    # Every call reported settled is recorded; at most the 4 in flight settled without reporting it.
    assert sum(settled) - 1e-9 <= spent <= sum(settled) + 4 * 0.01
    time.sleep(2.2)  # the dead worker's holds lapse after hold_ttl_s ...
    assert ledger.spent("key", "killed", "total") == pytest.approx((spent, 0.0))  # ... its spend stays
