"""``aiapp serve`` against the LiteLLM proxy, in front of the same stub, in one run.

Drives the peer harness in ``../shared/peers/litellm_proxy/`` (``run_all.py``, its stub and its
aiohttp load generator) twice: once with LiteLLM's proxy as the target (1 worker, as in the peer's
anchor), once with ``aiapp serve`` launched through ``--target-cmd`` on a temporary config that
routes model ``stub`` to the peer's stub (``api_base: ${STUB_API_BASE}``, which run_all.py sets).
Each invocation measures the stub alone next to its target, so every figure is "target minus stub
measured minutes apart on the same box". Every line printed is JSON: the peer's own lines tagged
with ``"target"``, then one ``"kind": "goal"`` line per goal of issue 15 and a ``"summary"``:

* ``added_p50_ms_c1``: added p50 latency of a plain call at concurrency 1 (goal <= 1 ms);
* ``rps_per_worker_c50``: req/s per worker at c=50, against LiteLLM's (goal >= 5x);
* ``stream_ttfb_added_p50_ms_c1``: stream time-to-first-byte overhead, one stream at a time
  (goal <= 2 ms), from a second, short run_all.py pass per target (``--stream-concurrency 1``);
* ``stream_ttfb_added_p50_ms``: the same at ``--stream-concurrency`` (default 10), held to the same
  goal. Read it with ``cpu_ms_per_stream``: 10 closed-loop clients keep one worker saturated, so
  a stream's first byte waits behind the others' chunks, and by Little's law the TTFB is about
  concurrency / streams per second. On a 2-core box that also runs the stub and the load
  generator, it measures the server's CPU per stream more than the latency it adds;
* ``rss_mb_per_worker``: the server's VmRSS (process and children, from ``/proc``) after the run,
  divided by the workers (goal <= 150 MB).

The summary also gives each target's CPU per request (``cpu_ms_per_req_c1``, ``cpu_ms_per_stream``,
from ``/proc`` around each load run, warm-up included): on a box shared with other work the
latency deltas swing with the load, while the server's own CPU per request stays comparable.

LiteLLM runs from its own venv (default ``/tmp/aiapp-litellm-venv``, created with
``pip install aiohttp httpx uvloop 'litellm[proxy]'`` when missing; ``--no-install`` refuses
instead). When the proxy cannot be installed or started, or with ``--skip-litellm``, the ratios use
the anchor figures from the peer's README (LiteLLM 1.106.2, 2026-11-22) and say so
(``"litellm_measured": false``). Everything started is ended by run_all.py, by process group.

Usage: python benchmarks/serve_vs_litellm.py [--runs 1] [--n 500] [--stream-n 100]
       [--concurrency 1,50] [--stream-concurrency 10] [--workers 1] [--skip-litellm]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEER = REPO.parent / "shared" / "peers" / "litellm_proxy"

#: From the peer README's anchor table (LiteLLM 1.106.2, 1 worker, stub at 0 ms; run1 / run2).
ANCHOR = {
    "source": "peers/litellm_proxy/README.md anchor (LiteLLM 1.106.2, 1 worker, 2026-11-22)",
    "added_p50_ms_c1": [15.0, 15.5],
    "rps_c50": [73.8, 67.0],
    "stream_ttfb_added_p50_ms": [257.0, 239.0],
    "rss_mb_final": 413.0,
}

CONFIG = """\
# Written by benchmarks/serve_vs_litellm.py: model "stub" -> the peer's stub server.
default_route: stub
routes:
  stub:
    deployments:
      - model: openai/stub
        api_base: ${STUB_API_BASE}
        timeout_s: 30
"""


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    print(f"[serve_vs_litellm] {message}", file=sys.stderr, flush=True)


def peer_venv(venv: Path, *, install: bool, litellm: bool) -> tuple[Path | None, str | None]:
    """The peer venv's python (with aiohttp, and litellm's proxy when asked), or why not."""
    python = venv / "bin" / "python"
    wanted = ["aiohttp", "httpx", "uvloop"] + (["litellm[proxy]"] if litellm else [])
    have_proxy = (venv / "bin" / "litellm").exists()
    ok = (
        python.exists()
        and subprocess.run([python, "-c", "import aiohttp, uvloop"], capture_output=True).returncode == 0
    )
    if ok and (have_proxy or not litellm):
        return python, None
    if not install:
        return (
            python if ok else None
        ), f"{venv} lacks {'litellm[proxy]' if ok else 'aiohttp/uvloop'} (--no-install)"
    log(f"installing {' '.join(wanted)} into {venv}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([python, "-m", "pip", "install", "-q", *wanted], capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"pip install failed: {done.stderr.strip()[-500:]}"
        base_ok = (
            subprocess.run([python, "-c", "import aiohttp, uvloop"], capture_output=True).returncode == 0
        )
        return (python if base_ok else None), reason
    return python, None


def run_peer(
    peer: Path, python: Path, args: list[str], target: str, logdir: Path, env: dict[str, str]
) -> list[dict[str, Any]]:
    """One run_all.py invocation; its JSON lines, tagged and echoed."""
    cmd = [str(python), str(peer / "run_all.py"), "--python", str(python), "--logdir", str(logdir), *args]
    log(f"{target}: {shlex.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = []
    for raw in proc.stdout.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        line["target"] = target
        emit(line)
        lines.append(line)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        target_log = logdir / "target.log"
        if target_log.exists():
            tail += "\n--- target.log ---\n" + target_log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"run_all.py for {target} exited {proc.returncode}:\n{tail}")
    return lines


def figures(lines: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """The goal metrics of one target, averaged over runs."""
    plain_c1 = [d for d in lines if d.get("kind") == "delta" and not d["stream"] and d["concurrency"] == 1]
    plain_c50 = [d for d in lines if d.get("kind") == "delta" and not d["stream"] and d["concurrency"] == 50]
    streams = [d for d in lines if d.get("kind") == "delta" and d["stream"]]
    own = [d for d in lines if d.get("kind") == "config" and d.get("server") != "stub"]
    end = next((d for d in lines if d.get("kind") == "end"), {})
    meta = next((d for d in lines if d.get("kind") == "meta"), {})

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 3) if values else None

    rss = end.get("target_rss_mb_final")
    return {
        "added_p50_ms_c1": mean([d["added_latency_ms"]["p50"] for d in plain_c1]),
        "rps_c50": mean([d["rps_target"] for d in plain_c50]),
        "rps_per_worker_c50": mean([d["rps_target"] / workers for d in plain_c50]),
        "stub_rps_c50": mean([d["rps_stub"] for d in plain_c50]),
        "stream_ttfb_added_p50_ms": mean([d["added_ttfb_ms"]["p50"] for d in streams]),
        "stream_total_added_p50_ms": mean([d["added_latency_ms"]["p50"] for d in streams]),
        "cpu_ms_per_req_c1": mean(_cpu(own, stream=False, concurrency=1)),
        "cpu_ms_per_req_c50": mean(_cpu(own, stream=False, concurrency=50)),
        "cpu_ms_per_stream": mean(_cpu(own, stream=True)),
        "rss_mb_final": rss,
        "rss_mb_per_worker": None if rss is None else round(rss / workers, 1),
        "rss_mb_idle": meta.get("target_rss_mb_idle"),
        "ready_s": meta.get("ready_s"),
        "workers": workers,
        "versions": meta.get("versions"),
    }


def _cpu(lines: list[dict[str, Any]], *, stream: bool, concurrency: int | None = None) -> list[float]:
    return [
        d["server_cpu_ms_per_req"]
        for d in lines
        if "server_cpu_ms_per_req" in d
        and bool(d.get("stream")) == stream
        and (concurrency is None or d.get("concurrency") == concurrency)
    ]


def local_versions() -> dict[str, str | None]:
    """Versions of what ``aiapp serve`` runs on (this interpreter's packages)."""
    import importlib.metadata as metadata

    out: dict[str, str | None] = {}
    for name in ("aiapp", "uvicorn", "starlette", "fastapi", "aiohttp", "uvloop", "httptools", "pydantic"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-dir", type=Path, default=Path(os.environ.get("AIAPP_PEER_DIR", DEFAULT_PEER)))
    parser.add_argument(
        "--peer-venv", type=Path, default=Path(os.environ.get("VENV", "/tmp/aiapp-litellm-venv"))
    )
    parser.add_argument("--no-install", action="store_true", help="never pip install into the peer venv")
    parser.add_argument("--skip-litellm", action="store_true", help="use the README anchor for LiteLLM")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--stream-n", type=int, default=500)
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--stream-concurrency", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="aiapp serve --workers")
    parser.add_argument("--stub-latency-ms", type=float, default=0.0)
    parser.add_argument("--port-base", type=int, default=18100, help="stub and target ports start here")
    args = parser.parse_args()

    if not (args.peer_dir / "run_all.py").exists():
        print(
            f"serve_vs_litellm: the peer harness is not at {args.peer_dir} (set --peer-dir)", file=sys.stderr
        )
        return 2
    if (
        importlib.util.find_spec("aiapp.server") is None
        or importlib.util.find_spec("aiapp.cli.serve") is None
    ):
        print(
            "serve_vs_litellm: `aiapp serve` is not available (aiapp.server / aiapp.cli.serve missing)",
            file=sys.stderr,
        )
        return 2
    python, why = peer_venv(args.peer_venv, install=not args.no_install, litellm=not args.skip_litellm)
    if python is None:
        print(f"serve_vs_litellm: no venv with aiohttp for the load generator: {why}", file=sys.stderr)
        return 2

    common = [
        "--runs", str(args.runs), "--stub-latency-ms", str(args.stub_latency_ms),
    ]  # fmt: skip
    main_pass = [
        "--n", str(args.n), "--stream-n", str(args.stream_n), "--concurrency", args.concurrency,
        "--stream-concurrency", str(args.stream_concurrency),
    ]  # fmt: skip
    # Streams one at a time: the overhead a stream's first byte gains, without the queueing that a
    # saturated worker adds at c=10 (run_all.py takes one stream concurrency per invocation).
    single_pass = [
        "--n", "100", "--stream-n", str(args.stream_n), "--concurrency", "1", "--stream-concurrency", "1",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="aiapp-serve-bench-") as tmp:
        work = Path(tmp)
        config = work / "aiapp.yaml"
        config.write_text(CONFIG)
        env = dict(os.environ, AIAPP_HOME=str(work / "home"), LITELLM_LOCAL_MODEL_COST_MAP="True")
        env.pop("AIAPP_CONFIG", None)

        def measure(target: str, base: int, extra: list[str], workers: int) -> dict[str, Any]:
            passes = []
            for offset, plan in ((0, main_pass), (2, single_pass)):
                ports = ["--stub-port", str(base + offset), "--target-port", str(base + offset + 1)]
                passes.append(
                    run_peer(
                        args.peer_dir,
                        python,
                        [*common, *plan, *ports, *extra],
                        target,
                        work / f"logs-{target}-{offset}",
                        env,
                    )
                )
            out = figures(passes[0], workers)
            out["stream_ttfb_added_p50_ms_c1"] = figures(passes[1], 1)["stream_ttfb_added_p50_ms"]
            return out

        litellm: dict[str, Any] | None = None
        litellm_reason = "--skip-litellm" if args.skip_litellm else why
        if litellm_reason is None:
            try:
                litellm = measure("litellm_proxy", args.port_base, [], 1)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                litellm_reason = f"the LiteLLM proxy run failed: {exc}"
                log(litellm_reason)

        serve = (
            f"{shlex.quote(sys.executable)} -m aiapp.cli serve --host 127.0.0.1 --port {{port}} --no-auth "
            f"--workers {args.workers} --config {shlex.quote(str(config))}"
        )
        try:
            aiapp = measure(
                "aiapp_serve",
                args.port_base + 4,
                ["--target-name", "aiapp_serve", "--target-cmd", serve],
                args.workers,
            )
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"serve_vs_litellm: the aiapp serve run failed: {exc}", file=sys.stderr)
            return 1
        aiapp["versions"] = local_versions()  # run_all reports the load generator's venv, not ours

    measured = litellm is not None
    if litellm is None:
        emit({"kind": "anchor", **ANCHOR, "why": litellm_reason})
        ref_rps = sum(ANCHOR["rps_c50"]) / 2  # type: ignore[arg-type]
        ref = {"rps_per_worker_c50": ref_rps, "added_p50_ms_c1": 15.25, "stream_ttfb_added_p50_ms": 248.0,
               "stream_ttfb_added_p50_ms_c1": None, "rss_mb_per_worker": ANCHOR["rss_mb_final"]}  # fmt: skip
    else:
        ref = litellm
    ratio = (
        round(aiapp["rps_per_worker_c50"] / ref["rps_per_worker_c50"], 2)
        if aiapp["rps_per_worker_c50"] and ref["rps_per_worker_c50"]
        else None
    )
    goals = [
        ("added_p50_ms_c1", aiapp["added_p50_ms_c1"], "<= 1 ms", lambda v: v <= 1.0),
        ("rps_per_worker_c50_vs_litellm", ratio, ">= 5x", lambda v: v >= 5.0),
        ("stream_ttfb_added_p50_ms_c1", aiapp["stream_ttfb_added_p50_ms_c1"], "<= 2 ms", lambda v: v <= 2.0),
        ("stream_ttfb_added_p50_ms", aiapp["stream_ttfb_added_p50_ms"], "<= 2 ms", lambda v: v <= 2.0),
        ("rss_mb_per_worker", aiapp["rss_mb_per_worker"], "<= 150 MB", lambda v: v <= 150.0),
    ]
    for name, value, goal, test in goals:
        emit({"kind": "goal", "metric": name, "value": value, "goal": goal,
              "met": None if value is None else bool(test(value)), "litellm_measured": measured})  # fmt: skip
    emit({"kind": "summary", "aiapp_serve": aiapp, "litellm_proxy": ref, "litellm_measured": measured,
          "litellm_note": None if measured else litellm_reason, "rps_ratio_per_worker_c50": ratio})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
