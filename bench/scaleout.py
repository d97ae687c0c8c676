"""The scale-out law: N workers on P partitions. A partition has one consumer in a group, so the
busiest of N workers holds ceil(P/N) partitions, and a finite backlog spread evenly over the
partitions ends when the busiest worker does: speed-up ~ P / ceil(P/N), not N.

Measured with N = 1..8 real `sluice worker` processes on the real broker, each with a FakeEngine
set to model a GPU that the worker cannot outrun (8 sequences at once, 200 ms each: 40 jobs/s;
N = 1 is the first row; 16 jobs in flight, the worker's rule of twice the engine's batch), at 12
partitions (Sluice's default) and at
48, the chart's default by its rule: the smallest multiple of 12 with ceil(P/N) <= P/(0.9 N), i.e.
at least 0.9 N x one worker, for every N up to maxReplicas (8). The workers join first and the
group settles; then the backlog (the same number of jobs in every partition, 480 per worker so
that every run lasts about as long) is produced and timed from its first job to its last result.
Rounds interleave the partition counts and the order of N. The host's CPU (all cores, from
/proc/stat) over each timed window shows when the machine, not the law, is the limit.
An earlier run at 50 ms per sequence (160 jobs/s of engine) was not engine-bound: a worker made
66 jobs/s, its slots waiting on the broker's round trips, so it measured the broker's latency under
load (0.88 N at N = 5 and 8 on 48 partitions) rather than the law.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from bench.common import kafka, topics
from sluice.contract import Job, SamplingParams, encode

_SAMPLING = SamplingParams(max_tokens=4)


def _backlog(bootstrap: str, topic: str, partitions: int, per_partition: int) -> float:
    """Produce per_partition jobs into every partition; returns when the first was sent."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    t0 = time.time()
    for i in range(per_partition * partitions):
        job = Job(job_id=f"s-{i}", model="fake", prompt="scale out", sampling=_SAMPLING)
        producer.produce(topic, encode(job), job.job_id.encode(), partition=i % partitions)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return t0


def _settled(bootstrap: str, group: str, members: int, timeout: float = 120) -> None:
    """Wait until the group is Stable with every worker holding partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
        except Exception:  # not known to the coordinator yet
            time.sleep(0.5)
            continue
        assigned = [m for m in desc.members if m.assignment and m.assignment.topic_partitions]
        if str(desc.state).endswith("STABLE") and len(assigned) == members:
            time.sleep(2.0)  # cooperative rebalancing may still move a partition
            return
        time.sleep(0.5)
    raise TimeoutError(f"group {group} did not settle with {members} members")


def _last_result(bootstrap: str, topic: str, n: int, timeout: float = 300) -> float:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "auto.offset.reset": "earliest"}
    )
    c.subscribe([topic])
    seen: set[bytes] = set()
    last = 0.0
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < n and time.monotonic() < deadline:
            for msg in c.consume(1000, 1.0):
                if msg.error() is None and msg.key() is not None:
                    seen.add(msg.key() or b"")
                    last = max(last, msg.timestamp()[1] / 1000)
    finally:
        c.close()
    if len(seen) < n:
        raise TimeoutError(f"{len(seen)} of {n} results")
    return last


def _cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def one_run(bootstrap: str, workers: int, partitions: int, per_partition: int) -> tuple[float, float]:
    """(jobs/s, host CPU busy share) of `workers` workers on a backlog of per_partition jobs in
    each of `partitions`."""
    s = topics(bootstrap, partitions=partitions)
    group = f"{s.jobs_topic}-workers"
    env = {
        **os.environ,
        **s.child_env(),
        "SLUICE_WORKER_GROUP_ID": group,
        "SLUICE_WORKER_ENGINE": "fake",
        "SLUICE_WORKER_FAKE_LATENCY_S": "0.2",
        "SLUICE_WORKER_FAKE_MAX_BATCH": "8",
        "SLUICE_WORKER_MAX_IN_FLIGHT": "16",  # the worker's rule: twice the engine's batch
        "SLUICE_WORKER_COMMIT_INTERVAL_S": "0.2",
        "SLUICE_WORKER_IDEMPOTENCY": "false",
    }
    cmd = [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", "worker"]
    with tempfile.TemporaryFile() as log:
        procs = [subprocess.Popen(cmd, env=env, stdout=log, stderr=log) for _ in range(workers)]
        try:
            _settled(bootstrap, group, workers)
            n = per_partition * partitions
            busy0, total0 = _cpu()
            t0 = _backlog(bootstrap, s.jobs_topic, partitions, per_partition)
            rate = n / (_last_result(bootstrap, s.results_topic, n) - t0)
            busy1, total1 = _cpu()
            return rate, (busy1 - busy0) / max(1, total1 - total0)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(60)


def main(max_workers: int = 8, rounds: int = 3, per_worker: int = 480) -> list[str]:
    counts = (12, 48)
    rates: dict[tuple[int, int], list[float]] = {}
    cpu: dict[tuple[int, int], list[float]] = {}
    with kafka() as bootstrap:
        for r in range(rounds):
            for partitions in counts if r % 2 == 0 else counts[::-1]:
                ns = list(range(1, max_workers + 1))
                for n in ns if r % 2 == 0 else ns[::-1]:
                    per_partition = math.ceil(per_worker * n / partitions)
                    rate, busy = one_run(bootstrap, n, partitions, per_partition)
                    rates.setdefault((partitions, n), []).append(rate)
                    cpu.setdefault((partitions, n), []).append(busy)
                    print(f"round {r} P={partitions} N={n}: {rate:,.0f} jobs/s, CPU {busy:.0%}", flush=True)
    rows = []
    for n in range(1, max_workers + 1):
        cells = []
        for partitions in counts:
            values = rates[(partitions, n)]
            base = statistics.median(rates[(partitions, 1)])
            law = partitions / math.ceil(partitions / n)
            speedup = statistics.median(values) / base
            cells.append(
                f"{statistics.median(values):,.0f} ({min(values):,.0f} to {max(values):,.0f}) | "
                f"**{speedup:.2f}x** = {speedup / n:.2f} N | {law:.2f}x | "
                f"{statistics.median(cpu[(partitions, n)]):.0%}"
            )
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    print("\n".join(main(*(int(a) for a in sys.argv[1:]))))
