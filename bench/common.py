"""Shared benchmark helpers: a broker (local or KAFKA_BOOTSTRAP_SERVERS), topics, bulk loading."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from sluice.broker import start_broker
from sluice.kafka import create_topics
from sluice.settings import KafkaSettings
from sluice.topics import TopicSpec

CACHE = Path(os.environ.get("SLUICE_CACHE_DIR", Path(__file__).resolve().parent.parent / ".cache"))


@contextmanager
def kafka() -> Iterator[str]:
    """Bootstrap servers of KAFKA_BOOTSTRAP_SERVERS, or of a local broker started for the run."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    broker = start_broker(CACHE, heap="1g")
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


def topics(bootstrap: str, partitions: int = 12) -> KafkaSettings:
    """Fresh jobs/results/dlq topics for one measurement."""
    p = f"bench-{uuid.uuid4().hex[:8]}"
    s = KafkaSettings(
        bootstrap_servers=bootstrap,
        jobs_topic=f"{p}-jobs",
        results_topic=f"{p}-results",
        dlq_topic=f"{p}-dlq",
        high_topic=f"{p}-jobs.high",
        jobs_partitions=partitions,
        results_partitions=partitions,
    )
    create_topics(
        s,
        [
            TopicSpec(s.jobs_topic, partitions, {}),
            TopicSpec(s.high_topic, partitions, {}),
            TopicSpec(s.results_topic, partitions, {}),
            TopicSpec(s.dlq_topic, 1, {}),
        ],
    )
    return s


def reader(bootstrap: str, topic: str) -> Consumer:
    """A consumer of `topic` from its beginning, in a group of its own, committing nothing."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    return c


def load(bootstrap: str, topic: str, n: int, make: Callable[[int], tuple[bytes, bytes]]) -> None:
    """Produce n records (key, value) = make(i) and wait until all are acknowledged."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for i in range(n):
        key, value = make(i)
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    partitions: int,
    n: int,
    timeout: float = 600,
    cpu: list[float] | None = None,
    pid: int | None = None,
) -> tuple[float, float, int]:
    """Sample the group's progress until n are committed; returns (t_first, t_last, done_at_first).

    t_first is the first sample with progress > 0, so start-up and group join are excluded.
    With `pid`, the process's CPU seconds at the first and last sample are appended to `cpu`.
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                done = sum(max(p.offset, 0) for p in c.committed(tps, timeout=10))
            except KafkaException:  # coordinator still loading: sample again
                time.sleep(0.1)
                continue
            now = time.perf_counter()
            if done > 0 and first is None:
                first = (now, done)
                if pid is not None and cpu is not None:
                    cpu.append(cpu_seconds(pid))
            if done >= n and first is not None:
                if pid is not None and cpu is not None:
                    cpu.append(cpu_seconds(pid))
                return first[0], now, first[1]
            time.sleep(0.05)
    finally:
        c.close()
    raise TimeoutError(f"group {group} did not finish {n} records")
