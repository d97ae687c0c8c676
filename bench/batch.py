"""Batch files and HTTP submission: rows/s of `submit_file` and `collect`, jobs/s of POST /v1/jobs.

Batch: a JSONL file of N jobs is submitted with a manifest (producer acknowledgements awaited,
acks=all); one worker (instant FakeEngine) answers them; once all are committed, `collect` reads
the N results into the output file. Each step is timed on its own.
HTTP: one `sluice api` process takes M jobs from `concurrency` clients posting at once (aiohttp,
in this process) after a warm-up of 500; a request ends when Kafka has acknowledged its job.
Latency is per request.
Everything shares the machine's 2 cores with the broker.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import orjson

from bench.common import kafka, topics, wait_committed
from bench.plumbing import worker_env
from gateway.keys import create_key
from producer import JobProducer, Manifest, collect, submit_file
from sluice.broker import free_port
from sluice.settings import KafkaSettings, ProducerSettings


def _file(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            f.write(
                orjson.dumps({"job_id": f"row-{i}", "model": "fake", "prompt": f"row {i} of a file"}) + b"\n"
            )


def batch(bootstrap: str, n: int) -> list[str]:
    s = topics(bootstrap)
    group = f"{s.jobs_topic}-workers"
    with tempfile.TemporaryDirectory() as tmp:
        source, manifest = Path(tmp) / "jobs.jsonl", Path(tmp) / "jobs.manifest.json"
        _file(source, n)
        t0 = time.perf_counter()
        with JobProducer(ProducerSettings(**s.model_dump())) as producer:
            summary = submit_file(producer, source, progress=False, manifest=manifest)
        t_submit = time.perf_counter() - t0
        if summary.acknowledged != n:
            raise RuntimeError(f"only {summary.acknowledged} of {n} rows acknowledged")
        with subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", "worker"],
            env=worker_env(s, group),
            stdout=subprocess.DEVNULL,
        ) as worker:
            try:
                wait_committed(bootstrap, group, s.jobs_topic, 12, n)
            finally:
                worker.terminate()
        t0 = time.perf_counter()
        with (Path(tmp) / "out.jsonl").open("wb") as out, (Path(tmp) / "err.jsonl").open("wb") as err:
            got = collect(s, Manifest.load(manifest), out, err, timeout_s=300, progress=False)
        t_collect = time.perf_counter() - t0
        if got.counts.get("succeeded") != n:
            raise RuntimeError(f"collected {got.counts}, expected {n} succeeded")
    submit_rate, collect_rate = n / t_submit, n / t_collect
    return [
        f"| `submit_file` with a manifest (acks=all) | {n:,} rows | **{submit_rate:,.0f} rows/s** "
        f"| {t_submit:.1f} s |",
        f"| `collect` into results.jsonl (all results already in Kafka) | {n:,} rows "
        f"| **{collect_rate:,.0f} rows/s** | {t_collect:.1f} s |",
    ]


async def _post_all(url: str, m: int, concurrency: int, token: str) -> list[float]:
    latencies: list[float] = []
    jobs = iter(range(m))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in jobs:
            t0 = time.perf_counter()
            async with session.post(url, json={"model": "fake", "prompt": f"posted {i}"}) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"POST answered {resp.status}: {await resp.text()}")
                await resp.read()
            latencies.append(time.perf_counter() - t0)

    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), headers=auth
    ) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return latencies


def http(bootstrap: str, m: int, concurrency: int) -> list[str]:
    s: KafkaSettings = topics(bootstrap)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = ["api", "--host", "127.0.0.1", "--port", str(port), "--store-path", f"{tmp}/store.db"]
        env = {**os.environ, **s.child_env()}
        token, _ = create_key(s, "bench")
        with subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", *args], env=env
        ) as api:
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError("sluice api did not come up")
                    time.sleep(0.2)
                url = f"http://127.0.0.1:{port}/v1/jobs"
                asyncio.run(_post_all(url, 500, concurrency, token))  # warm-up: connections, producer id
                t0 = time.perf_counter()
                latencies = asyncio.run(_post_all(url, m, concurrency, token))
                wall = time.perf_counter() - t0
            finally:
                api.terminate()
    q = statistics.quantiles(latencies, n=100)
    return [
        f"| POST /v1/jobs, one `sluice api` process, {concurrency} clients at once | {m:,} jobs "
        f"| **{m / wall:,.0f} jobs/s** | p50 {1000 * q[49]:.1f} ms, p99 {1000 * q[98]:.1f} ms |"
    ]


def main(n: int = 100_000, m: int = 10_000, concurrency: int = 64) -> list[str]:
    with kafka() as bootstrap:
        return batch(bootstrap, n) + http(bootstrap, m, concurrency)


if __name__ == "__main__":
    print("\n".join(main()))
