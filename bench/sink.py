"""Webhook delivery: deliveries/s of one `sluice sink` process, and the latency it adds.

Throughput: N results (each with a webhook URL) are loaded first; one sink process delivers them
to a local receiver (bench/receiver.py, its own process); rate = N / (last arrival - first).
Latency: with the sink caught up, results are produced at a steady 1,000/s for `seconds`;
latency = arrival at the receiver - the record's CreateTime (set when the result is produced).
Sink, receiver, broker and the load generator share the machine's cores.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from confluent_kafka import Producer

from bench.common import kafka, load, topics
from sluice.broker import free_port
from sluice.contract import Result, encode

SECRET = "whsec_YmVuY2gtc2luay1zZWNyZXQ="


def _receiver(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", "--port", str(port), "--secret", SECRET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/dump")
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("receiver did not start")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/count", timeout=30).json())


def _dump(port: int) -> tuple[dict[str, float], int]:
    data = httpx.get(f"http://127.0.0.1:{port}/dump", timeout=30).json()
    return data["seen"], data["bad_signatures"]


def _result(job_id: str, url: str) -> bytes:
    return encode(Result(job_id=job_id, status="succeeded", model="m", output="x" * 200, webhook_url=url))


def _run(n_load: int, seconds: float, rate: int) -> tuple[float, list[float], str]:
    with kafka() as bootstrap:
        s = topics(bootstrap, partitions=6)
        port = free_port()
        receiver = _receiver(port)
        url = f"http://127.0.0.1:{port}/hook"
        load(bootstrap, s.results_topic, n_load, lambda i: (f"t-{i}".encode(), _result(f"t-{i}", url)))
        env = {
            **os.environ,
            **s.child_env(),
            "SLUICE_DELIVERIES_TOPIC": f"{s.jobs_topic}-deliveries",
            "SLUICE_WEBHOOK_ALLOW_HTTP": "1",
            "SLUICE_WEBHOOK_ALLOWLIST": "127.0.0.1/32",
            "SLUICE_SINK_GROUP_ID": f"{s.jobs_topic}-sink",
            "SLUICE_SINK_WEBHOOK_SECRETS": SECRET,
            "SLUICE_SINK_ENDPOINT_CONCURRENCY": "32",
        }
        sink = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", "sink"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            cpu0 = (_cpu_s(sink.pid), _cpu_s(receiver.pid))
            while _count(port) < n_load:
                time.sleep(0.5)
            seen, bad = _dump(port)
            arrivals = sorted(seen.values())
            throughput = n_load / (arrivals[-1] - arrivals[0])
            used = (_cpu_s(sink.pid) - cpu0[0], _cpu_s(receiver.pid) - cpu0[1])
            cpu = f"CPU: sink {used[0]:.1f} s, receiver {used[1]:.1f} s"
            # Latency at a steady rate, the sink already caught up.
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
            total = int(seconds * rate)
            start = time.time()
            sent: dict[str, float] = {}
            for i in range(total):
                due = start + i / rate
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)
                job_id = f"l-{i}"
                sent[job_id] = time.time()
                producer.produce(s.results_topic, _result(job_id, url), job_id.encode())
                producer.poll(0)
            producer.flush(30)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and _count(port) < n_load + total:
                time.sleep(0.5)
            seen, bad = _dump(port)
            latencies = sorted(1000 * (seen[j] - t) for j, t in sent.items() if j in seen)
            return throughput, latencies, f"{cpu}; bad signatures in the sample: {bad}"
        finally:
            sink.terminate()
            sink.wait(60)
            receiver.terminate()
            receiver.wait(10)


def main(n_load: int = 30_000, seconds: float = 20.0, rate: int = 1000) -> list[str]:
    throughput, lat, notes = _run(n_load, seconds, rate)
    q = statistics.quantiles(lat, n=100)
    return [
        f"| deliveries/s, one sink process, {n_load:,} results loaded first | **{throughput:,.0f}** /s | "
        f"{notes} |",
        f"| added latency at {rate:,}/s for {seconds:.0f} s ({len(lat):,} results) | p50 {q[49]:.1f} ms, "
        f"**p99 {q[98]:.1f} ms**, max {lat[-1]:.1f} ms | result produced -> webhook received |",
    ]


if __name__ == "__main__":
    print("\n".join(main()))
