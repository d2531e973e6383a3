"""Which async HTTP client to build the OpenAI-compatible provider on: measured, not assumed.

The same N chat calls at concurrency C go to one ``StubServer(latency_ms=L, subprocess=True)``
through the ``openai`` SDK, a tuned ``httpx.AsyncClient`` and ``aiohttp``, one client per run.
``efficiency`` is ideal time (N / C × L) over wall time: 1.0 means the client adds nothing.
Each client runs ``--rounds`` times, interleaved, and the median is reported, since this machine
is noisy.

    python benchmarks/http_clients.py [--calls 2000] [--concurrency 16] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from _common import emit
from aiapp.testing import StubServer

Body = dict[str, object]
_BODY: Body = {"model": "stub", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 16}


async def _drive(call: Callable[[], Awaitable[object]], calls: int, concurrency: int) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return time.perf_counter() - start


async def run_openai(base: str, calls: int, concurrency: int) -> float:
    import httpx
    import openai

    client = openai.AsyncOpenAI(
        base_url=base,
        api_key="x",
        max_retries=0,
        http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)),
    )
    try:
        return await _drive(lambda: client.chat.completions.create(**_BODY), calls, concurrency)  # type: ignore[call-overload]
    finally:
        await client.close()


async def run_httpx(base: str, calls: int, concurrency: int) -> float:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def call() -> object:
            response = await client.post("/chat/completions", json=_BODY)
            return response.json()

        return await _drive(call, calls, concurrency)


async def run_aiohttp(base: str, calls: int, concurrency: int) -> float:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"{base}/chat/completions"

        async def call() -> object:
            async with session.post(url, json=_BODY) as response:
                return await response.json()

        return await _drive(call, calls, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ideal = args.calls / args.concurrency * args.latency_ms / 1000.0
    runners = {"openai": run_openai, "httpx": run_httpx, "aiohttp": run_aiohttp}
    walls: dict[str, list[float]] = {name: [] for name in runners}
    with StubServer(latency_ms=args.latency_ms, subprocess=True) as stub:
        for _ in range(args.rounds):
            for name, runner in runners.items():
                walls[name].append(asyncio.run(runner(stub.base_url, args.calls, args.concurrency)))
    for name, values in walls.items():
        wall = statistics.median(values)
        emit(
            {
                "benchmark": "http_clients",
                "client": name,
                "calls": args.calls,
                "concurrency": args.concurrency,
                "wall_s": round(wall, 3),
                "ideal_s": round(ideal, 3),
                "efficiency": round(ideal / wall, 3),
                "efficiency_rounds": [round(ideal / w, 3) for w in values],
            }
        )


if __name__ == "__main__":
    main()
