"""Fixtures for router, cache and budget tests: a manual clock, scripted deployments, a real Redis.

Imported by name into the test modules that use them (a second conftest.py would shadow the
root one's `from conftest import REPO`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiapp.config import Deployment
from aiapp.gateway import ManualClock, register_provider
from aiapp.gateway._pricing import PriceTable
from aiapp.testing import FakeModel

#: Deployments with ``provider: fixture-scripted`` are served by these fakes, by model name.
SCRIPTED: dict[str, FakeModel] = {}


@register_provider("fixture-scripted")
def _scripted(deployment: Deployment, prices: PriceTable) -> FakeModel:
    fake = SCRIPTED.get(deployment.model)
    if fake is None:
        raise KeyError(f"no scripted fake for {deployment.model}")
    return fake


@pytest.fixture
def clock() -> ManualClock:
    """Time that moves only when a test (or a retry wait) moves it."""
    return ManualClock()


@pytest.fixture
def scripted() -> Iterator[dict[str, FakeModel]]:
    """Register fakes here by deployment model name; configure deployments with ``provider: fixture-scripted``."""
    SCRIPTED.clear()
    yield SCRIPTED
    SCRIPTED.clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free port (no persistence); skips only if it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (bash scripts/services.sh installs it)")
    port = _free_port()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port} (exit code {proc.poll()})")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def flushed(redis_url: str) -> str:
    """The shared Redis server's URL, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url
