"""Fixtures for server tests: the app served by uvicorn on 127.0.0.1 in a background thread.

Imported with ``pytest_plugins = ["server_fixtures"]`` (a second conftest.py would shadow the root one).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from aiapp.config import Budget, Deployment, Limits, Price, RetrievalSettings, Route, Settings
from aiapp.gateway import Gateway
from aiapp.server import ServerSettings, create_app
from aiapp.server._proto import HTTP_PROTOCOL


class Served:
    """An ASGI app served by uvicorn from a daemon thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
            http=HTTP_PROTOCOL,
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def stub_settings(base_url: str, home: Path) -> Settings:
    """Routes on the stub: ``stub``; ``flaky`` and ``slow`` (own deployments, so their breakers stay
    apart); ``tight`` (a budget one call overspends); ``limited`` (1 rpm)."""

    def dep(model: str, **kw: Any) -> Deployment:
        return Deployment(model=f"openai/{model}", api_base=base_url, timeout_s=kw.pop("timeout_s", 10), **kw)

    return Settings(
        default_route="stub",
        routes={
            "stub": Route(deployments=[dep("stub-model")]),
            "flaky": Route(deployments=[dep("flaky-model")]),
            "slow": Route(deployments=[dep("slow-model", timeout_s=0.5)]),
            "tight": Route(deployments=[dep("pricey-model")], budget=Budget(limit_usd=0.001, window="total")),
            "limited": Route(deployments=[dep("limited-model")], limits=Limits(rpm=1)),
        },
        pricing={"openai/pricey-model": Price(input_per_mtok=1_000_000.0, output_per_mtok=1_000_000.0)},
        retrieval=RetrievalSettings(embedder="vllm/stub-embed", embedder_api_base=base_url),
        home=home,
    )


@pytest.fixture(scope="module")
def gateway(_stub_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("server-home")
    yield Gateway(stub_settings(_stub_session.base_url, home))


@pytest.fixture(scope="module")
def served(gateway: Gateway) -> Iterator[Served]:
    app = create_app(gateway, settings=ServerSettings(max_body_bytes=100_000), close_gateway=True)
    server = Served(app).start()
    yield server
    server.stop()
