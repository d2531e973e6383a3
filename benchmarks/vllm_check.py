"""End-to-end check against a real vLLM server: the gateway and ``aiapp serve`` in front of it.

Needs a machine with an NVIDIA GPU and vLLM installed (``pip install vllm``). It starts
``vllm serve MODEL`` on 127.0.0.1, waits for ``/health``, then runs through the gateway (route
``model: vllm/auto``): a plain completion, a stream (TTFB), a JSON-schema structured output, a
``guided_choice`` call and ``Gateway.check`` (``/health``); then, if ``aiapp.server`` is importable,
``aiapp serve`` in front of the same route (plain and streamed ``/v1/chat/completions``). Every
line printed is JSON; without a GPU or vLLM it prints one ``{"kind": "skipped", "reason": ...}``
line, says why on stderr and exits 2. It ends only the processes it started. It exits 1 when any
check reports ``"ok": false``.

``--base-url`` checks a server that is already running instead (a vLLM started by hand, or the test
suite's stub, which is how ``tests/gateway/providers/test_vllm.py`` keeps this script working on
machines without a GPU): nothing is launched but ``aiapp serve``, and no GPU is looked for.

Usage: python benchmarks/vllm_check.py [--model Qwen/Qwen2.5-0.5B-Instruct | /path/to/model]
       [--port 8001] [--serve-port 8002] [--max-model-len 4096] [--timeout 900]
       python benchmarks/vllm_check.py --base-url http://127.0.0.1:8001/v1 [--api-key KEY]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit

_STARTED: list[subprocess.Popen[bytes]] = []
_FAILED: list[str] = []


def report(line: dict[str, Any]) -> None:
    """Print one check's line, remembering a failed one for the exit code."""
    if line.get("ok") is False:
        _FAILED.append(f"{line.get('kind')}:{line.get('check')}")
    emit(line)


def _no_gpu_reason(vllm_bin: str | None) -> str | None:
    """Why this machine cannot run the check, or ``None`` when it can."""
    smi = shutil.which("nvidia-smi")
    if smi is None and not Path("/dev/nvidia0").exists():
        return "no NVIDIA GPU found (no nvidia-smi, no /dev/nvidia0)"
    if smi is not None:
        probe = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0 or "GPU" not in probe.stdout:
            return f"nvidia-smi lists no GPU: {(probe.stderr or probe.stdout).strip()[:200]}"
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return "CUDA_VISIBLE_DEVICES is empty: no GPU visible"
    if vllm_bin is None and importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm), and no vllm executable is on PATH"
    return None


def _start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _STARTED.append(proc)
    return proc


def _stop_all() -> None:
    for proc in reversed(_STARTED):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # the group our own child leads
    for proc in reversed(_STARTED):
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _get(url: str, key: str | None = None, timeout: float = 5.0) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def _wait(url: str, proc: subprocess.Popen[bytes], timeout_s: float, name: str, log: Path) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{name} exited with code {proc.returncode}; log tail:\n{tail}")
        if _get(url) == 200:
            return time.time() - t0
        time.sleep(1.0)
    raise SystemExit(f"{name} not healthy after {timeout_s:.0f}s at {url} (log: {log})")


def _post(url: str, body: dict[str, Any], key: str | None, *, stream: bool = False) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    t0 = time.perf_counter()
    with opener.open(request, timeout=120) as response:
        if not stream:
            data = json.loads(response.read())
            return {"status": response.status, "ms": (time.perf_counter() - t0) * 1000, "body": data}
        ttfb, events, text = None, 0, []
        for raw in response:
            line = raw.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            event = json.loads(line[5:])
            for choice in event.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    ttfb = ttfb if ttfb is not None else (time.perf_counter() - t0) * 1000
                    text.append(delta)
            events += 1
        return {
            "status": response.status,
            "ms": (time.perf_counter() - t0) * 1000,
            "ttfb_ms": ttfb,
            "events": events,
            "text": "".join(text),
        }


def _gateway_checks(base_url: str) -> None:
    from aiapp.config import Deployment, Route, Settings
    from aiapp.gateway import Gateway
    from aiapp.types import CallOptions, ResponseFormat

    route = Route(deployments=[Deployment(model="vllm/auto", api_base=base_url, api_key_env="VLLM_API_KEY")])
    settings = Settings(routes={"vllm": route}, default_route="vllm")
    with Gateway(settings) as gw:
        [health] = gw.check(["vllm"])  # the embedded routes (local, judge ...) are there too
        report(
            {
                "kind": "gateway",
                "check": "health",
                "ok": health.ok,
                "detail": health.detail,
                "ms": round(health.latency_ms, 1),
            }
        )
        t0 = time.perf_counter()
        reply = gw.complete("Say hello in five words.", options=CallOptions(max_tokens=32, temperature=0))
        report(
            {
                "kind": "gateway",
                "check": "complete",
                "ok": bool(reply.text),
                "ms": round((time.perf_counter() - t0) * 1000, 1),
                "text": reply.text[:200],
                "usage": reply.usage.model_dump(),
            }
        )
        t0 = time.perf_counter()
        first: float | None = None
        pieces = []
        for chunk in gw.stream("Count from one to ten.", options=CallOptions(max_tokens=64, temperature=0)):
            if chunk.delta and first is None:
                first = (time.perf_counter() - t0) * 1000
            pieces.append(chunk.delta)
        report(
            {
                "kind": "gateway",
                "check": "stream",
                "ok": bool("".join(pieces)),
                "ttfb_ms": first and round(first, 1),
                "ms": round((time.perf_counter() - t0) * 1000, 1),
                "chunks": len(pieces),
            }
        )
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
            "required": ["city", "country"],
        }
        fmt = ResponseFormat(type="json_schema", json_schema=schema, name="place")
        reply = gw.complete(
            "Name a city and its country as JSON.", options=CallOptions(max_tokens=64, response_format=fmt)
        )
        try:
            data = reply.json_data()
            ok = isinstance(data, dict) and {"city", "country"} <= set(data)
        except Exception as exc:  # report, do not stop: the next checks still tell something
            data, ok = repr(exc), False
        report({"kind": "gateway", "check": "json_schema", "ok": ok, "data": data})
        reply = gw.complete(
            "Is the sky blue? Answer yes or no.",
            options=CallOptions(max_tokens=4, extra={"guided_choice": ["yes", "no"]}),
        )
        report(
            {
                "kind": "gateway",
                "check": "guided_choice",
                "ok": reply.text.strip() in ("yes", "no"),
                "text": reply.text,
            }
        )


def _serve_checks(base_url: str, port: int, work: Path, env: dict[str, str], timeout_s: float) -> None:
    if importlib.util.find_spec("aiapp.server") is None:
        report({"kind": "serve", "skipped": "aiapp.server is not importable"})
        return
    config = work / "aiapp.yaml"
    config.write_text(
        "default_route: vllm\nroutes:\n  vllm:\n    deployments:\n      - model: vllm/auto\n"
        f"        api_base: {base_url}\n        api_key_env: VLLM_API_KEY\n"
    )
    log = work / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "aiapp.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-auth",
        "--config",
        str(config),
    ]
    proc = _start(cmd, log, env)
    ready = _wait(f"http://127.0.0.1:{port}/health", proc, min(timeout_s, 120), "aiapp serve", log)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"model": "vllm", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16}
    plain = _post(url, body, None)
    report(
        {
            "kind": "serve",
            "check": "complete",
            "ready_s": round(ready, 1),
            "ok": plain["status"] == 200,
            "ms": round(plain["ms"], 1),
            "text": plain["body"]["choices"][0]["message"]["content"][:200],
        }
    )
    streamed = _post(url, {**body, "stream": True}, None, stream=True)
    report(
        {
            "kind": "serve",
            "check": "stream",
            "ok": bool(streamed["text"]),
            "ttfb_ms": streamed["ttfb_ms"],
            "ms": round(streamed["ms"], 1),
            "events": streamed["events"],
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct", help="hub id or local path")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--serve-port", type=int, default=8002)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--vllm-bin", default=shutil.which("vllm"))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for /health")
    parser.add_argument("--base-url", help="check this running server (…/v1) instead of starting vLLM")
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY"), help="with --base-url")
    args = parser.parse_args()

    if args.base_url:
        return _check_running(args)

    reason = _no_gpu_reason(args.vllm_bin)
    if reason is not None:
        emit({"kind": "skipped", "reason": reason})
        print(f"vllm_check: skipped: {reason}", file=sys.stderr)
        return 2

    key = "sk-vllm-" + secrets.token_hex(16)
    env = _environment(key)
    vllm = [args.vllm_bin] if args.vllm_bin else [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    base_url = f"http://127.0.0.1:{args.port}/v1"
    with tempfile.TemporaryDirectory(prefix="aiapp-vllm-check-") as tmp:
        work = Path(tmp)
        log = work / "vllm.log"
        cmd = [
            *vllm,
            "serve",
            args.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
            "--api-key",
            key,
            "--max-model-len",
            str(args.max_model_len),
            "--gpu-memory-utilization",
            str(args.gpu_memory_utilization),
        ]
        try:
            t0 = time.time()
            proc = _start(cmd, log, env)
            ready = _wait(f"http://127.0.0.1:{args.port}/health", proc, args.timeout, "vllm serve", log)
            emit(
                {
                    "kind": "vllm",
                    "model": args.model,
                    "ready_s": round(ready, 1),
                    "started_s": round(time.time() - t0, 1),
                    "models_status": _get(base_url + "/models", key),
                }
            )
            _gateway_checks(base_url)
            _serve_checks(base_url, args.serve_port, work, env, args.timeout)
        finally:
            _stop_all()
    return _verdict()


def _environment(key: str) -> dict[str, str]:
    """The environment for the checks and the processes they start, also set on this process:
    the vLLM key, a private ``AIAPP_HOME`` unless one is given, and no proxy for loopback."""
    loopback = "127.0.0.1,localhost"
    env = dict(os.environ, VLLM_API_KEY=key, NO_PROXY=loopback, no_proxy=loopback)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("AIAPP_HOME", tempfile.mkdtemp(prefix="aiapp-vllm-check-"))
    os.environ.update({k: env[k] for k in ("VLLM_API_KEY", "AIAPP_HOME", "NO_PROXY", "no_proxy")})
    return env


def _check_running(args: argparse.Namespace) -> int:
    """The gateway and ``aiapp serve`` checks against an already running server at ``--base-url``."""
    base_url = args.base_url.rstrip("/")
    env = _environment(args.api_key or "")
    root = base_url.removesuffix("/v1")
    report({"kind": "vllm", "base_url": base_url, "ok": _get(root + "/health") == 200,
            "check": "health", "models_status": _get(base_url + "/models", args.api_key)})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="aiapp-vllm-check-") as tmp:
        try:
            _gateway_checks(base_url)
            _serve_checks(base_url, args.serve_port, Path(tmp), env, min(args.timeout, 120))
        finally:
            _stop_all()
    return _verdict()


def _verdict() -> int:
    if _FAILED:
        print(f"vllm_check: failed checks: {', '.join(_FAILED)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
