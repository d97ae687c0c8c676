"""Integration fixtures: one real Kafka broker per session (or KAFKA_BOOTSTRAP_SERVERS), fresh
topics per test, and helpers to run workers and the sink as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from sluice.contract import Result, decode_result
from sluice.kafka import create_topics, header_pairs
from sluice.settings import KafkaSettings
from sluice.topics import TopicSpec, cancels_topic

SECRET = "whsec_c2x1aWNlLXRlc3Qtc2VjcmV0LWtleQ=="
TENANT = "acme"  # the tenant of the API keys tests create


@dataclass
class Env:
    """Topic names and group ids unique to one test, plus the environment for child processes."""

    bootstrap: str
    prefix: str
    partitions: int

    @property
    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            jobs_topic=f"{self.prefix}-jobs",
            high_topic=f"{self.prefix}-jobs.high",
            results_topic=f"{self.prefix}-results",
            dlq_topic=f"{self.prefix}-dlq",
            deliveries_topic=f"{self.prefix}-deliveries",
            api_keys_topic=f"{self.prefix}-keys",
            files_topic=f"{self.prefix}-files",
            file_chunks_topic=f"{self.prefix}-file-chunks",
            batches_topic=f"{self.prefix}-batches",
            webhook_allow_http=True,
            webhook_allowlist=["127.0.0.1/32"],
            jobs_partitions=self.partitions,
            results_partitions=self.partitions,
        )

    def environ(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            **self.settings.child_env(),
            "SLUICE_WORKER_GROUP_ID": f"{self.prefix}-workers",
            "SLUICE_WORKER_ENGINE": "fake",  # tests that need vLLM ask for it
            "SLUICE_WORKER_SESSION_TIMEOUT_MS": "6000",
            "SLUICE_WORKER_HEARTBEAT_INTERVAL_MS": "500",
            "SLUICE_WORKER_COMMIT_INTERVAL_S": "0.2",
            "SLUICE_SINK_GROUP_ID": f"{self.prefix}-sink",
            "SLUICE_API_GROUP_ID": f"{self.prefix}-gateway",
            "SLUICE_API_SESSION_TIMEOUT_MS": "6000",
            "SLUICE_API_HEARTBEAT_INTERVAL_MS": "500",
            "SLUICE_SINK_SESSION_TIMEOUT_MS": "6000",
            "SLUICE_SINK_HEARTBEAT_INTERVAL_MS": "500",
            "SLUICE_SINK_WEBHOOK_SECRETS": SECRET,
            "SLUICE_SINK_RETRY_SCHEDULE": "0,0.5,1,1,2",
            "SLUICE_SINK_BREAKER_COOLDOWN_S": "1",
            "SLUICE_SINK_COMMIT_INTERVAL_S": "0.2",
        }
        env.update(extra)
        return env


@pytest.fixture
def env(bootstrap: str) -> Env:
    e = Env(bootstrap, f"t{uuid.uuid4().hex[:10]}", partitions=6)
    s = e.settings
    specs = [
        TopicSpec(s.jobs_topic, e.partitions, {"cleanup.policy": "delete"}),
        TopicSpec(s.high_topic, e.partitions, {"cleanup.policy": "delete"}),
        TopicSpec(s.results_topic, e.partitions, {"cleanup.policy": "compact"}),
        TopicSpec(s.dlq_topic, 1, {"cleanup.policy": "delete"}),
        TopicSpec(cancels_topic(s), 1, {"cleanup.policy": "compact,delete"}),
    ]
    create_topics(s, specs)
    return e


class Procs:
    """Child `sluice` processes started by a test; all are killed at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.closers: list[Callable[[], None]] = []  # run at teardown (clients of the processes)

    def start(self, name: str, args: list[str], environ: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}-{len(self.procs)}.log").open("wb")
        # A session (and process group) of its own: kill() takes the process with its children,
        # as a container stop does (a SIGKILLed vLLM worker otherwise leaves its engine core behind).
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", *args],
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and everything it started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("*.log")))

    def stop_all(self) -> None:
        for close in self.closers:
            close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)  # reaped: a Popen collected while running warns (an error under pytest)
        for proc in self.procs:  # whatever they started and left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.stop_all()


def read_topic(
    bootstrap: str, topic: str, idle_s: float = 3.0
) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Every record of `topic` from the beginning (key, value, headers), read without a group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    records = []
    eof: set[int] = set()
    last = time.monotonic()
    while len(eof) < len(meta.partitions) and time.monotonic() - last < idle_s:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        last = time.monotonic()
        if msg.error():
            eof.add(msg.partition() or 0)
            continue
        records.append((msg.key(), msg.value(), header_pairs(msg.headers())))
    consumer.close()
    return records


def read_results(bootstrap: str, topic: str) -> list[Result]:
    return [decode_result(v) for _, v, _ in read_topic(bootstrap, topic)]


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.25) -> None:
    """Poll `predicate()` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def api_key(env: Env, tenant: str = TENANT, **limits: int) -> str:
    """A new API key of the test's gateway (its keys topic), for `tenant`."""
    from gateway.keys import create_key

    token, _ = create_key(env.settings, tenant, **limits)
    return token
