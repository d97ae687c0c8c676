"""Why the sink posts with aiohttp: requests/s of aiohttp and httpx, side by side, same receiver.

Each client sends N signed-size POSTs (1 KiB body) to bench/receiver.py with 32 concurrent
requests over keep-alive connections; the rounds alternate between the clients.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import httpx

from bench.sink import _receiver
from sluice.broker import free_port

BODY = b"x" * 1024


async def _aiohttp(url: str, n: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as s:

        async def one(i: int) -> None:
            async with s.post(url, data=BODY, headers={"webhook-id": f"a{i}"}, allow_redirects=False) as r:
                await r.read()

        return await _drive(one, n, concurrency)


async def _httpx(url: str, n: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=15, follow_redirects=False) as c:

        async def one(i: int) -> None:
            await c.post(url, content=BODY, headers={"webhook-id": f"h{i}"})

        return await _drive(one, n, concurrency)


async def _drive(one: object, n: int, concurrency: int) -> float:
    queue = iter(range(n))

    async def lane() -> None:
        for i in queue:
            await one(i)  # type: ignore[operator]

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return n / (time.perf_counter() - start)


def main(n: int = 10_000, rounds: int = 2, concurrency: int = 32) -> list[str]:
    port = free_port()
    receiver = _receiver(port)
    url = f"http://127.0.0.1:{port}/hook"
    rates: dict[str, list[float]] = {"aiohttp": [], "httpx": []}
    try:
        for _ in range(rounds):
            rates["aiohttp"].append(asyncio.run(_aiohttp(url, n, concurrency)))
            rates["httpx"].append(asyncio.run(_httpx(url, n, concurrency)))
    finally:
        receiver.terminate()
        receiver.wait(10)
    versions = {"aiohttp": aiohttp.__version__, "httpx": httpx.__version__}
    best = {k: max(v) for k, v in rates.items()}
    rows = []
    for k, v in rates.items():
        runs = " / ".join(f"{r:,.0f}" for r in v)
        rows.append(f"| {k} {versions[k]} | {n:,} x {rounds} | {runs} | **{best[k]:,.0f}** req/s |")
    rows.append(f"| ratio aiohttp / httpx (best of each) | | | **{best['aiohttp'] / best['httpx']:.2f}x** |")
    return rows


if __name__ == "__main__":
    print("\n".join(main()))
