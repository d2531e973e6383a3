"""Per-call overhead of aiapp's gateway against the raw openai client and litellm.

1000 sequential chat calls per client against the local stub server, which runs in a child process
so it does not share the client's GIL. Clients are interleaved in blocks so machine noise hits them
alike. Every line printed is JSON; the last is the summary:

    raw_p50_ms, litellm_p50_ms, aiapp_p50_ms (fast path, tracing on), aiapp_litellm_p50_ms,
    aiapp_overhead_ms (= aiapp_p50_ms - raw_p50_ms; goal <= 0.5),
    raw_async_p50_ms (openai.AsyncOpenAI), aiapp_async_p50_ms (Gateway.acomplete), both awaited one at
    a time on one persistent loop, and aiapp_async_overhead_ms (goal <= 0.5). aiapp's fast path speaks
    the wire over aiohttp, so it can beat the SDK; aiapp_layers_ms (= aiapp_async - raw_aiohttp, a bare
    aiohttp POST of the same body) is what the gateway's own routing, layers and tracing cost,
    cache_hit_p50_ms (a whole gateway call answered by the exact cache, SQLite, tracing on; goal <= 0.5),
    aiapp_export_p50_ms (the fast path with ``tracing.export: otlp`` to a local OTLP receiver in a
    child process), aiapp_export_overhead_ms (= aiapp_export_p50_ms - raw_p50_ms; goal <= 0.5) and
    export_added_ms (= aiapp_export_p50_ms - aiapp_p50_ms), with the spans the receiver got.

Usage: python benchmarks/gateway_overhead.py [--calls 1000] [--block 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("AIAPP_HOME", tempfile.mkdtemp(prefix="aiapp-bench-"))

from _common import emit, interleaved_times, percentile, summary
from aiapp.config import CacheSettings, Deployment, Route, Settings, TracingSettings
from aiapp.gateway import Gateway
from aiapp.gateway.providers.litellm import import_litellm
from aiapp.testing import StubServer

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

# An OTLP/HTTP receiver in its own process (so it does not share the client's GIL): it counts the
# spans in each protobuf request and reports them on GET /stats.
RECEIVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
stats = {"requests": 0, "spans": 0}
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = ExportTraceServiceRequest(); request.ParseFromString(body)
        stats["requests"] += 1
        stats["spans"] += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        self.send_response(200); self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        out = json.dumps(stats).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(out))); self.end_headers()
        self.wfile.write(out)
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def _receiver() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, f"http://127.0.0.1:{process.stdout.readline().strip()}"


def _receiver_stats(url: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/stats", timeout=10) as response:
        stats: dict[str, int] = json.loads(response.read())
        return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()

    import openai

    litellm = import_litellm()
    with StubServer.spawn() as stub:
        base = stub.base_url
        raw = openai.OpenAI(base_url=base, api_key="x", max_retries=0)
        raw_async = openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0)
        loop = asyncio.new_event_loop()  # one loop for the async clients, as a server would have
        import aiohttp

        async def session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession()

        bare = loop.run_until_complete(session())
        body = {"model": "stub-model", "messages": MESSAGES}

        async def aiohttp_call() -> object:
            async with bare.post(f"{base}/chat/completions", json=body) as response:
                return await response.json()

        settings = Settings(
            routes={
                "fast": Route(deployments=[Deployment(model="vllm/stub-model", api_base=base)]),
                "via_litellm": Route(
                    deployments=[
                        Deployment(
                            model="openai/stub-model",
                            provider="litellm",
                            api_base=base,
                            api_key_env="AIAPP_BENCH_KEY",
                        )
                    ]
                ),
            }
        )
        os.environ["AIAPP_BENCH_KEY"] = "x"
        gw = Gateway(settings)
        cached = Gateway(settings.model_copy(update={"cache": CacheSettings()}), store=gw.tracer.store)
        receiver, receiver_url = _receiver()
        exporting = Gateway(
            settings.model_copy(
                update={"tracing": TracingSettings(export="otlp", endpoint=f"{receiver_url}/v1/traces")}
            ),
            store=gw.tracer.store,
        )
        user = MESSAGES[0]["content"]

        clients: dict[str, Callable[[], object]] = {
            "raw": lambda: raw.chat.completions.create(model="stub-model", messages=MESSAGES),  # type: ignore[arg-type]
            "litellm": lambda: litellm.completion(
                model="openai/stub-model", messages=MESSAGES, api_base=base, api_key="x", num_retries=0
            ),
            "aiapp": lambda: gw.complete(user, model="fast"),
            "aiapp_litellm": lambda: gw.complete(user, model="via_litellm"),
            "aiapp_cache_hit": lambda: cached.complete(user, model="fast"),  # first call (warm-up) fills it
            "aiapp_export": lambda: exporting.complete(user, model="fast"),
            "raw_async": lambda: loop.run_until_complete(
                raw_async.chat.completions.create(model="stub-model", messages=MESSAGES)  # type: ignore[arg-type]
            ),
            "aiapp_async": lambda: loop.run_until_complete(gw.acomplete(user, model="fast")),
            "raw_aiohttp": lambda: loop.run_until_complete(aiohttp_call()),
        }
        times = interleaved_times(clients, calls=args.calls, block=args.block)
        stats = stub.stats()
        loop.run_until_complete(bare.close())
        exported = exporting.tracer.pipeline
        assert exported is not None and exporting.tracer.flush_exports(30.0)
        received = _receiver_stats(receiver_url)
        receiver.terminate()

    for name, values in times.items():
        emit({"client": name, "calls": len(values), **summary(values)})
    p50 = {name: percentile(values, 50) for name, values in times.items()}
    overhead = p50["aiapp"] - p50["raw"]
    async_overhead = p50["aiapp_async"] - p50["raw_async"]
    emit(
        {
            "benchmark": "gateway_overhead",
            "calls_per_client": args.calls,
            "stub_requests": stats.get("requests"),
            "raw_p50_ms": round(p50["raw"], 4),
            "litellm_p50_ms": round(p50["litellm"], 4),
            "aiapp_p50_ms": round(p50["aiapp"], 4),
            "aiapp_litellm_p50_ms": round(p50["aiapp_litellm"], 4),
            "aiapp_overhead_ms": round(overhead, 4),
            "litellm_overhead_ms": round(p50["litellm"] - p50["raw"], 4),
            "goal_overhead_le_0_5_ms": overhead <= 0.5,
            "raw_async_p50_ms": round(p50["raw_async"], 4),
            "aiapp_async_p50_ms": round(p50["aiapp_async"], 4),
            "aiapp_async_overhead_ms": round(async_overhead, 4),
            "goal_async_overhead_le_0_5_ms": async_overhead <= 0.5,
            "raw_aiohttp_p50_ms": round(p50["raw_aiohttp"], 4),
            "aiapp_layers_ms": round(p50["aiapp_async"] - p50["raw_aiohttp"], 4),
            "cache_hit_p50_ms": round(p50["aiapp_cache_hit"], 4),
            "goal_cache_hit_le_0_5_ms": p50["aiapp_cache_hit"] <= 0.5,
            "tracing": "on (SQLite, batched commits)",
            "aiapp_export_p50_ms": round(p50["aiapp_export"], 4),
            "aiapp_export_overhead_ms": round(p50["aiapp_export"] - p50["raw"], 4),
            "goal_export_overhead_le_0_5_ms": p50["aiapp_export"] - p50["raw"] <= 0.5,
            "export_added_ms": round(p50["aiapp_export"] - p50["aiapp"], 4),
            "export": "otlp/http to a local receiver (child process), batched off the hot path",
            "export_spans_received": received["spans"],
            "export_requests": received["requests"],
            "export_dropped": exported.dropped,
            "export_failed": exported.failed,
        }
    )


if __name__ == "__main__":
    main()
