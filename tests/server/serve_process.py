"""Run the real ``aiapp serve`` command in a child process for the process-level server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stub_config(path: Path, base_url: str, *, redis_url: str | None = None, extra: str = "") -> Path:
    """A config routing ``stub`` to the stub server; output tokens cost $0.001 each."""
    redis = f"redis_url: {redis_url}\nbudgets:\n  hold_ttl_s: 5\n" if redis_url else ""
    path.write_text(
        f"""default_route: stub
{redis}routes:
  stub:
    deployments:
      - model: openai/stub-model
        api_base: {base_url}
        timeout_s: 30
pricing:
  openai/stub-model:
    input_per_mtok: 0.0
    output_per_mtok: 1000.0
{extra}"""
    )
    return path


class ServeProcess:
    """``python -m aiapp.cli serve`` on a free loopback port, its own process group."""

    def __init__(self, config: Path, home: Path, *args: str) -> None:
        self.port = free_port()
        self.log = home / f"serve-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "AIAPP_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
        cmd = [sys.executable, "-m", "aiapp.cli", "serve", "--port", str(self.port), "--config", str(config)]
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [*cmd, *args], env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90.0) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aiapp serve exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"aiapp serve did not answer /health in {timeout}s:\n{self.output()}")

    def accepting(self) -> bool:
        """Whether the listening socket still takes new connections."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def children(self) -> list[int]:
        """The worker processes (``--workers N``) under the supervisor."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
            if ppid == self.proc.pid and b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                found.append(int(entry.name))
        return sorted(found)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._out.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
