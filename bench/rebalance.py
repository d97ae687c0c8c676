"""Scaling a busy group up and down under each group protocol: classic (cooperative-sticky, the
default) and consumer (KIP-848, SLUICE_GROUP_PROTOCOL=consumer), on the real broker.

Each run: 12 partitions hold a backlog; two `sluice worker` processes (FakeEngine, 8 sequences of
200 ms: 40 jobs/s each) work on it; a third starts (scale up: "join", from its start to the moment
it is assigned jobs partitions, by its log; starting Python and the worker is ~1 s of it for both
protocols); 5 s later it gets SIGTERM (scale down: "handover", from the signal until every jobs
partition it held is assigned to another worker; it drains its jobs in flight first). "Pause" is
the longest gap between two results of the first two workers from the third's start to 3 s after
the handover: how long the members that stay stop answering while the group changes (a worker
answers a batch every ~200 ms). Every group gets the same liveness settings: session 6 s and
heartbeat 500 ms, as SLUICE_WORKER_SESSION_TIMEOUT_MS and SLUICE_WORKER_HEARTBEAT_INTERVAL_MS
(classic) or as the group's own broker-side consumer.session.timeout.ms and
consumer.heartbeat.interval.ms (consumer). Runs alternate the protocols and their order.

Read (2026-12-01, two runs of this section, 8 runs of each protocol): a new worker was assigned
partitions ~0.7 s sooner on the consumer protocol (0.80-1.01 s from its start vs 1.56-1.94 s);
handover was alike (medians 0.56-0.62 vs 0.60-0.63 s); neither stopped the staying workers for a
group-wide join (cooperative-sticky is incremental too), though 3 of 8 consumer runs paused them
for 0.86-0.99 s, no classic one past one 200 ms batch. No reason yet to change the default. This
benchmark also found the one difference that mattered: a worker whose close() hung on the consumer
protocol (3 of ~9 runs before the fix in consumer/worker.py, 0 of 24 since).
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import orjson
from confluent_kafka import Producer

from bench.common import kafka, reader, topics
from sluice.contract import Job, SamplingParams, decode_result, encode
from sluice.kafka import set_group_session

PARTITIONS = 12
PROTOCOLS = ("classic", "consumer")


class Results:
    """Collects (timestamp, worker id, partition of the job) of every result, as they arrive."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.seen: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bootstrap, topic), daemon=True)
        self._thread.start()

    def _run(self, bootstrap: str, topic: str) -> None:
        c = reader(bootstrap, topic)
        try:
            while not self._stop.is_set():
                for msg in c.consume(500, 0.2):
                    if msg.error() is None and msg.value():
                        r = decode_result(msg.value() or b"")
                        part = int(r.job_id.rsplit("-", 1)[1]) % PARTITIONS
                        self.seen.append((msg.timestamp()[1] / 1000, r.worker_id or "", part))
        finally:
            c.close()

    def first(self, pred: object, timeout: float = 120) -> tuple[float, str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for row in list(self.seen):
                if pred(row):  # type: ignore[operator]
                    return row
            time.sleep(0.1)
        raise TimeoutError("no such result")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def one_run(bootstrap: str, protocol: str) -> tuple[float, float, float]:
    """(join s, handover s, pause s) of one scale-up and scale-down under `protocol`."""
    s = topics(bootstrap, partitions=PARTITIONS)
    group = f"{s.jobs_topic}-workers"
    env = {
        **os.environ,
        **s.child_env(),
        "SLUICE_GROUP_PROTOCOL": protocol,
        "SLUICE_WORKER_GROUP_ID": group,
        "SLUICE_WORKER_ENGINE": "fake",
        "SLUICE_WORKER_FAKE_LATENCY_S": "0.2",
        "SLUICE_WORKER_FAKE_MAX_BATCH": "8",
        "SLUICE_WORKER_MAX_IN_FLIGHT": "16",
        "SLUICE_WORKER_COMMIT_INTERVAL_S": "0.2",
        "SLUICE_WORKER_IDEMPOTENCY": "false",
        "PYTHONFAULTHANDLER": "1",
    }
    if protocol == "classic":
        env |= {"SLUICE_WORKER_SESSION_TIMEOUT_MS": "6000", "SLUICE_WORKER_HEARTBEAT_INTERVAL_MS": "500"}
    else:
        for g in (group, f"{group}.high"):
            set_group_session(s, g, 6000, 500)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(PARTITIONS * 400):  # ~60 s of work for three workers: it outlasts the run
        job = Job(job_id=f"r-{i}", model="fake", prompt="rebalance", sampling=SamplingParams(max_tokens=4))
        producer.produce(s.jobs_topic, encode(job), job.job_id.encode(), partition=i % PARTITIONS)
    assert producer.flush(60) == 0
    results = Results(bootstrap, s.results_topic)
    cmd = [sys.executable, "-m", "sluice.cli", "--log-level", "INFO", "worker", "--worker-id"]
    with tempfile.NamedTemporaryFile() as log:
        procs = [subprocess.Popen([*cmd, f"w{i}"], env=env, stdout=log, stderr=log) for i in (1, 2)]
        try:
            for w in ("w1", "w2"):
                results.first(lambda r, w=w: r[1] == w)
            time.sleep(3.0)  # settled: both answering
            t_join = time.time()
            procs.append(subprocess.Popen([*cmd, "w3"], env=env, stdout=log, stderr=log))
            results.first(lambda r: r[1] == "w3")
            time.sleep(5.0)
            t_leave = time.time()
            procs[2].terminate()
            procs[2].wait(60)
            held = _assigned(log.name, s.jobs_topic, "w3", t_leave)
            deadline = time.monotonic() + 60
            while (
                not (moved := _moved(log.name, s.jobs_topic, held, t_leave)) and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            if not moved:
                raise TimeoutError(f"partitions {sorted(held)} of w3 were not assigned again")
            handover = moved - t_leave
            time.sleep(3.0)
            joined = [
                when
                for when, w, what, _ in _events(log.name, s.jobs_topic)
                if w == "w3" and what == "assigned"
            ]
            join = min(joined) - t_join
            stay = sorted(
                ts
                for ts, w, _ in results.seen
                if w in ("w1", "w2") and t_join <= ts <= t_leave + handover + 3
            )
            pause = max((b - a for a, b in itertools.pairwise(stay)), default=0.0)
            return join, handover, pause
        finally:
            results.stop()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: its threads' stacks to the log
                    proc.wait(10)
                    tail = Path(log.name).read_bytes().decode(errors="replace").splitlines()[-120:]
                    stuck = f"{proc.args[-1]!s} did not stop on SIGTERM:\n"
                    raise RuntimeError(stuck + "\n".join(tail)) from None


def _events(path: str, topic: str) -> list[tuple[float, str, str, set[int]]]:
    """(time, worker, "assigned" or "revoked"/"lost", jobs partitions) from the workers' log."""
    got = []
    with open(path, "rb") as f:
        for line in f:
            if not line.startswith(b"{") or b'"partitions ' not in line:
                continue
            e = orjson.loads(line)
            parts = {
                int(p.rsplit(":", 1)[1]) for p in e.get("partitions", []) if p.rsplit(":", 1)[0] == topic
            }
            if parts and "worker_id" in e:
                when = datetime.fromisoformat(e["ts"]).timestamp()
                got.append((when, e["worker_id"], e["msg"].removeprefix("partitions "), parts))
    return got


def _assigned(path: str, topic: str, worker: str, until: float) -> dict[int, tuple[float, str]]:
    """The jobs partitions `worker` held at `until`, each with when it was assigned it."""
    held: dict[int, tuple[float, str]] = {}
    for when, w, what, parts in sorted(_events(path, topic)):
        if w != worker or when > until:
            continue
        for p in parts:
            if what == "assigned":
                held[p] = (when, w)
            else:
                held.pop(p, None)
    return held


def _moved(path: str, topic: str, held: dict[int, tuple[float, str]], since: float) -> float | None:
    """When the last of `held` was assigned to another worker after `since` (None: not all yet)."""
    first: dict[int, float] = {}
    for when, w, what, parts in _events(path, topic):
        if what == "assigned" and w != "w3" and when >= since:
            for p in parts & set(held):
                first.setdefault(p, when)
    return max(first.values()) if len(first) == len(held) else None


def main(rounds: int = 4) -> list[str]:
    got: dict[str, list[tuple[float, float, float]]] = {p: [] for p in PROTOCOLS}
    with kafka() as bootstrap:
        for r in range(rounds):
            for protocol in PROTOCOLS if r % 2 == 0 else PROTOCOLS[::-1]:
                join, handover, pause = one_run(bootstrap, protocol)
                got[protocol].append((join, handover, pause))
                print(
                    f"round {r} {protocol}: join {join:.2f} s, handover {handover:.2f} s, pause {pause:.2f} s"
                )

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f} to {max(values):.2f})"

    return [
        f"| {p} | {len(runs)} | " + " | ".join(cell([run[k] for run in runs]) for k in range(3)) + " |"
        for p, runs in got.items()
    ]


if __name__ == "__main__":
    print("\n".join(main(*(int(a) for a in sys.argv[1:]))))
