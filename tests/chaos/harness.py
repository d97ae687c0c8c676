"""The chaos suite: jobs with webhooks through real processes while faults are injected, then an
independent check that nothing was lost.

Everything is real except the model: a fresh Kafka broker (KRaft, its own for this run, since it
gets killed), `sluice worker` processes (FakeEngine, a test double standing in for vLLM: the
faults here are in the pipeline, not in the model), a `sluice sink` process, and a webhook
receiver in this process. While the jobs are submitted at a steady rate:

- workers are SIGKILLed at random (a supervisor restarts them, as Kubernetes would);
- a worker is frozen (SIGSTOP) for longer than its session timeout, then thawed (SIGCONT), twice;
- extra workers join and leave every few seconds (a rebalance storm);
- the broker is SIGKILLed once and started again on the same data;
- the sink is SIGKILLed and restarted;
- the receiver flaps: it answers 500, 429 + Retry-After, or is unreachable for a while.

The verdict uses none of Sluice's own counters: the jobs this harness had acknowledged by Kafka,
the results topic read from the beginning by a plain consumer (read_committed), and the webhooks
the receiver accepted after checking their signatures with tests/webhook_spec.py.

    python -m tests.chaos.harness [--jobs N] [--exactly-once] [--write RELIABILITY.md]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from producer.client import JobProducer, Submitted
from sluice.broker import LocalCluster, free_port, start_cluster
from sluice.contract import Job, SamplingParams
from sluice.kafka import create_topics, set_group_session
from sluice.settings import KafkaSettings, ProducerSettings
from sluice.topics import TopicSpec
from tests.conftest import cache_dir
from tests.webhook_spec import spec_valid

SECRET = "whsec_Y2hhb3Mtc3VpdGUtc2VjcmV0LWtleS0xMjM0NQ=="


@dataclass
class Plan:
    """What to do to the system; times are seconds after the first job is submitted."""

    jobs: int = 20_000
    rate: float = 400.0  # jobs submitted per second
    partitions: int = 12
    workers: int = 3
    worker_kills: int = 12
    # SIGSTOP a worker for longer than its session timeout (6 s), then SIGCONT, as a long GC pause or
    # a stalled VM would. Measured: frozen mid-rebalance, it is not replaced; the rebalance waits.
    pauses_at: tuple[float, ...] = (16.0, 33.0)
    pause_s: float = 9.0
    storm: tuple[float, float, float] = (12.0, 36.0, 3.0)  # start, end, every
    broker_restart_at: float = 27.0
    sink_kills_at: tuple[float, ...] = (18.0, 41.0)
    flaps: int = 9  # receiver outages at most, cycling 500 / down / 429, each while webhooks flow
    exactly_once: bool = False
    # "consumer": every group on KIP-848's protocol, its 6 s session and 500 ms heartbeat set on
    # the broker per group (the classic run sets them in each client).
    group_protocol: str = "classic"
    nodes: int = 1  # 3: a KRaft cluster (replication 3, min.insync.replicas 2); its leader is killed
    seed: int = 7
    settle_timeout_s: float = 300.0


@dataclass
class Report:
    plan: Plan
    submitted: int = 0
    submit_errors: int = 0
    result_records: int = 0
    jobs_with_result: int = 0
    not_succeeded: int = 0
    unknown_results: int = 0
    lost: int = 0
    duplicate_results: int = 0
    # Exactly once: jobs whose record was read again after their result had been committed (the
    # worker commits the offset past them and publishes nothing). From the workers' logs, so a
    # lower bound: a SIGKILLed worker's last lines can be lost.
    read_again: int = 0
    webhooks_expected: int = 0
    webhooks_delivered: int = 0
    webhook_requests: int = 0
    webhook_refusals: int = 0
    lost_webhooks: int = 0
    duplicate_deliveries: int = 0
    webhook_id_mismatches: int = 0
    bad_signatures: int = 0
    job_dlq: int = 0
    delivery_dlq: int = 0
    worker_kills: int = 0
    worker_joins: int = 0
    worker_leaves: int = 0
    worker_crashes: int = 0
    worker_pauses: int = 0
    broker_restarts: int = 0
    killed_node: int = 0  # the node.id of the broker killed
    sink_kills: int = 0
    receiver_outages: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)

    def table(self) -> str:
        p = self.plan
        mode = "exactly-once (transactions)" if p.exactly_once else "at-least-once (default)"
        outages = ", ".join(f"{n} x {kind}" for kind, n in sorted(self.receiver_outages.items()))
        rows = [
            ("mode", mode),
            *(
                [("consumer groups", "KIP-848 protocol (SLUICE_GROUP_PROTOCOL=consumer)")]
                if p.group_protocol == "consumer"
                else []
            ),
            ("jobs submitted (acknowledged by Kafka)", f"{self.submitted:,} ({self.submit_errors} refused)"),
            ("worker SIGKILLs", str(self.worker_kills)),
            *(
                [("workers frozen past their session timeout (SIGSTOP, SIGCONT)", str(self.worker_pauses))]
                if p.pauses_at
                else []
            ),
            ("rebalance storm: workers joined / left", f"{self.worker_joins} / {self.worker_leaves}"),
            ("Kafka", "1 node" if p.nodes == 1 else f"{p.nodes} nodes, replication 3, min.insync.replicas 2"),
            (
                "broker SIGKILLed and restarted",
                str(self.broker_restarts)
                if p.nodes == 1
                else f"{self.broker_restarts} (node {self.killed_node}, the leader of most jobs partitions)",
            ),
            ("sink SIGKILLed and restarted", str(self.sink_kills)),
            ("receiver outages", outages),
            ("jobs with a final result", f"{self.jobs_with_result:,}"),
            ("**jobs lost**", f"**{self.lost}**"),
            ("result records / duplicates", f"{self.result_records:,} / {self.duplicate_results:,}"),
            *(
                [
                    (
                        "jobs read again after their result was committed (not published again)",
                        f"{self.read_again}",
                    )
                ]
                if p.exactly_once
                else []
            ),
            ("results not succeeded / for unknown job ids", f"{self.not_succeeded} / {self.unknown_results}"),
            (
                "webhooks expected / delivered (2xx, signature valid)",
                f"{self.webhooks_expected:,} / {self.webhooks_delivered:,}",
            ),
            ("**webhooks lost**", f"**{self.lost_webhooks}**"),
            (
                "duplicate deliveries (all with the job's webhook-id)",
                f"{self.duplicate_deliveries:,} ({self.webhook_id_mismatches} with another id)",
            ),
            ("webhook requests refused by the flapping receiver", f"{self.webhook_refusals:,}"),
            ("bad signatures", str(self.bad_signatures)),
            ("job DLQ / delivery DLQ records", f"{self.job_dlq} / {self.delivery_dlq}"),
            ("workers that exited on their own", str(self.worker_crashes)),
            ("wall time", f"{self.seconds:.0f} s"),
        ]
        return "| check | result |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)

    def failures(self) -> list[str]:
        """Every broken promise; empty when the run kept them all."""
        bad = []
        if self.submitted != self.plan.jobs:
            bad.append(f"only {self.submitted} of {self.plan.jobs} jobs were acknowledged at submit")
        if self.lost:
            bad.append(f"{self.lost} jobs have no result")
        if self.lost_webhooks:
            bad.append(f"{self.lost_webhooks} webhooks were never delivered")
        if self.not_succeeded or self.unknown_results:
            bad.append(f"{self.not_succeeded} results not succeeded, {self.unknown_results} for unknown ids")
        if self.webhook_id_mismatches or self.bad_signatures:
            bad.append(
                f"{self.webhook_id_mismatches} webhook-id mismatches, {self.bad_signatures} bad signatures"
            )
        if self.job_dlq or self.delivery_dlq:
            bad.append(f"{self.job_dlq} job DLQ and {self.delivery_dlq} delivery DLQ records")
        if self.plan.exactly_once and self.duplicate_results:
            bad.append(f"{self.duplicate_results} duplicate results in exactly-once mode")
        return bad


class FlappingReceiver:
    """A webhook endpoint in a thread of its own; `mode` says how it answers right now."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.mode = "ok"  # ok | 500 | 429 | down
        self.deliveries: dict[str, list[str]] = defaultdict(list)  # job id -> webhook-ids accepted
        self.requests = 0
        self.accepted = 0
        self.refused = 0
        self.bad_signatures = 0
        self._loop = asyncio.new_event_loop()
        self._site: web.TCPSite | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests += 1
        if self.mode == "down" and request.transport is not None:
            self.refused += 1
            request.transport.close()  # a kept-alive connection to a host that went away
            return web.Response(status=503)
        if self.mode in ("500", "429"):
            self.refused += 1
            headers = {"Retry-After": "1"} if self.mode == "429" else {}
            return web.Response(status=int(self.mode), headers=headers)
        if not spec_valid(SECRET, request.headers, body):
            self.bad_signatures += 1
            return web.Response(status=400)
        self.deliveries[orjson.loads(body)["job_id"]].append(request.headers["webhook-id"])
        self.accepted += 1
        return web.Response(status=204)

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def start(self) -> None:
        self._thread.start()

        async def up() -> None:
            app = web.Application()
            app.router.add_post("/hook", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await self._listen()

        self._call(up())

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    def set_mode(self, mode: str) -> None:
        """Switch behaviour; "down" also closes the listening socket (connections are refused)."""

        async def switch() -> None:
            if mode == "down" and self._site is not None:
                await self._site.stop()
                self._site = None
            elif mode != "down" and self._site is None:
                await self._listen()
            self.mode = mode

        self._call(switch())

    def stop(self) -> None:
        async def down() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        self._call(down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class Processes:
    """The `sluice` child processes, a supervisor that restarts dead core workers, and the faults."""

    def __init__(self, env: dict[str, str], logs: Path, report: Report, core_workers: int) -> None:
        self.env = env
        self.logs = logs
        self.report = report
        self.core: list[subprocess.Popen[bytes]] = []
        self.extra: list[subprocess.Popen[bytes]] = []
        self.sink: subprocess.Popen[bytes] | None = None
        self.retired: list[subprocess.Popen[bytes]] = []  # replaced or leaving; reaped at the end
        self.killed: set[int] = set()  # pids this harness killed or stopped (not crashes)
        self._n = 0
        self._lock = threading.Lock()
        self._core_workers = core_workers

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        self._n += 1
        with (self.logs / f"{self._n:03d}-{name}.log").open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "sluice.cli", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self) -> None:
        with self._lock:
            self.sink = self._spawn("sink", ["sink"])
            self.core = [self._spawn("worker", ["worker"]) for _ in range(self._core_workers)]

    def supervise(self) -> None:
        """Restart what died; count the deaths this harness did not cause."""
        with self._lock:
            for i, proc in enumerate(self.core):
                if proc.poll() is not None:
                    if proc.pid not in self.killed:
                        self.report.worker_crashes += 1
                        self.report.events.append(f"worker {proc.pid} exited {proc.returncode} by itself")
                    self.retired.append(proc)
                    self.core[i] = self._spawn("worker", ["worker"])
            if self.sink is not None and self.sink.poll() is not None:
                if self.sink.pid not in self.killed:
                    self.report.events.append(f"sink {self.sink.pid} exited {self.sink.returncode} by itself")
                self.retired.append(self.sink)
                self.sink = self._spawn("sink", ["sink"])

    def kill_worker(self, rng: random.Random) -> None:
        with self._lock:
            alive = [p for p in self.core if p.poll() is None]
            if alive:
                proc = rng.choice(alive)
                self.killed.add(proc.pid)
                proc.kill()
                self.report.worker_kills += 1

    def pause_worker(self, rng: random.Random, seconds: float) -> None:
        with self._lock:
            alive = [p for p in self.core if p.poll() is None]
            if not alive:
                return
            proc = rng.choice(alive)
            proc.send_signal(signal.SIGSTOP)
            self.report.worker_pauses += 1
            self.report.events.append(f"worker {proc.pid} frozen for {seconds:.0f} s")

        def wake() -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)

        resume = threading.Timer(seconds, wake)
        resume.daemon = True
        resume.start()

    def kill_sink(self) -> None:
        with self._lock:
            if self.sink is not None and self.sink.poll() is None:
                self.killed.add(self.sink.pid)
                self.sink.kill()
                self.report.sink_kills += 1

    def join_or_leave(self) -> None:
        with self._lock:
            alive = [p for p in self.extra if p.poll() is None]
            if len(alive) < 2:
                self.extra.append(self._spawn("extra-worker", ["worker"]))
                self.report.worker_joins += 1
            else:
                leaving = alive[0]
                self.killed.add(leaving.pid)
                leaving.send_signal(signal.SIGTERM)  # a graceful leave: drain, commit, leave the group
                self.extra.remove(leaving)
                self.retired.append(leaving)
                self.report.worker_leaves += 1

    def stop_all(self) -> None:
        with self._lock:
            everyone = [*self.core, *self.extra, *self.retired, *([self.sink] if self.sink else [])]
            for proc in everyone:
                self.killed.add(proc.pid)
                if proc.poll() is None:
                    proc.terminate()
            for proc in everyone:
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _settings(bootstrap: str, prefix: str, replication_factor: int = 1) -> ProducerSettings:
    return ProducerSettings(
        delivery_timeout_ms=300_000,
        bootstrap_servers=bootstrap,
        replication_factor=replication_factor,
        jobs_topic=f"{prefix}-jobs",
        high_topic=f"{prefix}-jobs.high",
        results_topic=f"{prefix}-results",
        dlq_topic=f"{prefix}-dlq",
        deliveries_topic=f"{prefix}-deliveries",
        webhook_allow_http=True,
        webhook_allowlist=["127.0.0.1/32"],
    )


def _child_env(s: KafkaSettings, plan: Plan, tmp: Path) -> dict[str, str]:
    env = _classic_env(s, plan, tmp)
    if plan.group_protocol == "consumer":
        for name in [k for k in env if k.endswith(("_SESSION_TIMEOUT_MS", "_HEARTBEAT_INTERVAL_MS"))]:
            del env[name]
        env["SLUICE_GROUP_PROTOCOL"] = "consumer"
    return env


def _classic_env(s: KafkaSettings, plan: Plan, tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        **s.child_env(),
        "SLUICE_WORKER_GROUP_ID": f"{s.jobs_topic}-workers",
        "SLUICE_WORKER_ENGINE": "fake",
        # A SIGKILLed child's last log lines are the ones that explain a failure: write them at once.
        "PYTHONUNBUFFERED": "1",
        "SLUICE_WORKER_FAKE_LATENCY_S": "0.02",
        "SLUICE_WORKER_MAX_IN_FLIGHT": "64",
        "SLUICE_WORKER_SESSION_TIMEOUT_MS": "6000",
        "SLUICE_WORKER_HEARTBEAT_INTERVAL_MS": "500",
        "SLUICE_WORKER_COMMIT_INTERVAL_S": "0.2",
        "SLUICE_WORKER_DRAIN_TIMEOUT_S": "10",
        "SLUICE_WORKER_IDEMPOTENCY_DIR": str(tmp / "idempotency"),
        "SLUICE_WORKER_EXACTLY_ONCE": "1" if plan.exactly_once else "0",
        "SLUICE_SINK_GROUP_ID": f"{s.jobs_topic}-sink",
        "SLUICE_SINK_SESSION_TIMEOUT_MS": "6000",
        "SLUICE_SINK_HEARTBEAT_INTERVAL_MS": "500",
        "SLUICE_SINK_COMMIT_INTERVAL_S": "0.2",
        "SLUICE_SINK_WEBHOOK_SECRETS": SECRET,
        # Enough attempts to outlast any receiver outage below (the longest is 3 s) many times over.
        "SLUICE_SINK_RETRY_SCHEDULE": "0,0.5,1,2,3,5,5,10,10,10",
        "SLUICE_SINK_BREAKER_COOLDOWN_S": "1",
    }


def _read_all(bootstrap: str, topic: str, idle_s: float = 5.0) -> list[tuple[bytes | None, bytes | None]]:
    """Every committed record of a topic from the beginning, read without a group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-verify-{uuid.uuid4().hex}",
            "log_level": 0,  # the broker restart makes clients complain; the verdict is in the data
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        consumer.close()
        return []
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out: list[tuple[bytes | None, bytes | None]] = []
    eof: set[int] = set()
    last = time.monotonic()
    while len(eof) < len(meta.partitions) and time.monotonic() - last < idle_s:
        for msg in consumer.consume(1000, 0.2):
            last = time.monotonic()
            if msg.error():
                eof.add(msg.partition() or 0)
            else:
                out.append((msg.key(), msg.value()))
    consumer.close()
    return out


class ResultsWatch:
    """Follows the results topic while the run goes on, to know when everything has an answer."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.ids: set[str] = set()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"chaos-watch-{uuid.uuid4().hex}",
                "log_level": 0,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, name="results-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.2):
                if not msg.error() and msg.key() is not None:
                    self.ids.add(msg.key().decode())  # type: ignore[union-attr]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def _schedule(
    plan: Plan,
    procs: Processes,
    cluster: LocalCluster,
    report: Report,
    rng: random.Random,
    jobs_topic: str,
) -> list[tuple[float, str, Callable[[], None]]]:
    events: list[tuple[float, str, Callable[[], None]]] = []
    span = plan.jobs / plan.rate
    for i in range(plan.worker_kills):
        at = span * (i + 0.5) / plan.worker_kills + rng.uniform(-1.0, 1.0)
        events.append((at, "SIGKILL a worker", lambda: procs.kill_worker(rng)))
    for at in plan.pauses_at:
        events.append((at, "SIGSTOP a worker", lambda: procs.pause_worker(rng, plan.pause_s)))
    start, end, every = plan.storm
    t = start
    while t < end:
        events.append((t, "worker joins or leaves", procs.join_or_leave))
        t += every

    def broker_restart() -> None:
        node_id = _busiest_leader(cluster, jobs_topic)
        report.killed_node = node_id
        broker = cluster.node(node_id)
        broker.kill()
        time.sleep(2.0)
        broker.restart()
        report.broker_restarts += 1

    what = "the broker" if plan.nodes == 1 else "the node leading most jobs partitions"
    events.append((plan.broker_restart_at, f"SIGKILL {what}, restart it", broker_restart))
    for at in plan.sink_kills_at:
        events.append((at, "SIGKILL the sink", procs.kill_sink))
    return sorted(events, key=lambda e: e[0])


def _flap(plan: Plan, receiver: FlappingReceiver, report: Report, t0: float, stop: threading.Event) -> None:
    """Cycle the receiver's outages, each starting while webhooks flow.

    Anchored to deliveries, not to the clock: on a loaded machine the first result can come late
    (an exactly-once worker waits for the transaction coordinator of a fresh broker), and results
    can stop for a while mid-run (a broker restart; a killed exactly-once worker's open transaction
    holds read_committed readers back until the broker aborts it), so outages timed by the clock
    could all fall where the sink sends nothing. Each outage waits for a fresh accepted webhook, and
    a 500 or 429 outage lasts until it has refused a request too (an outage nobody met proves
    nothing), 30 s at most. Outages stop once every job's webhook has arrived.
    """
    deadline = time.monotonic() + plan.settle_timeout_s
    cycle = [("500", 2.0), ("down", 3.0), ("429", 2.0)]
    for k in range(plan.flaps):
        seen = receiver.accepted
        while receiver.accepted == seen:
            everything = plan.jobs - report.submit_errors  # the jobs Kafka refused get no webhook
            if len(receiver.deliveries) >= everything or time.monotonic() > deadline or stop.wait(0.05):
                return
        kind, length = cycle[k % len(cycle)]
        began = time.monotonic()
        refused = receiver.refused
        report.receiver_outages[kind] += 1
        receiver.set_mode(kind)
        stopped = stop.wait(length)
        while (
            not stopped and kind != "down" and receiver.refused == refused and time.monotonic() < began + 30
        ):
            stopped = stop.wait(0.1)
        receiver.set_mode("ok")
        report.events.append(f"{began - t0:6.1f}s receiver {kind} for {time.monotonic() - began:.1f}s")
        if stopped or stop.wait(4.0):
            return


def _inject(
    events: list[tuple[float, str, Callable[[], None]]], t0: float, report: Report, stop: threading.Event
) -> None:
    """Start each fault at its time (in a thread of its own: a broker restart takes seconds)."""
    for at, what, action in events:
        if stop.wait(max(0.0, t0 + at - time.monotonic())):
            return
        report.events.append(f"{time.monotonic() - t0:6.1f}s {what}")
        threading.Thread(target=action, name=what, daemon=True).start()


def _submit(plan: Plan, s: ProducerSettings, url: str, report: Report, t0: float) -> set[str]:
    """Submit plan.jobs jobs at plan.rate per second; returns the ids Kafka acknowledged."""
    acked: set[str] = set()

    def acknowledged(job_id: str) -> Callable[[Future[Submitted]], None]:
        def done(future: Future[Submitted]) -> None:
            if future.exception() is None:
                acked.add(job_id)
            else:
                report.submit_errors += 1

        return done

    sampling = SamplingParams(max_tokens=8)
    with JobProducer(s, log_level=0) as producer:
        for i in range(plan.jobs):
            if (delay := t0 + i / plan.rate - time.monotonic()) > 0:
                time.sleep(delay)
            job = Job(
                job_id=f"chaos-{i}", model="fake", prompt=f"chaos {i}", sampling=sampling, webhook_url=url
            )
            producer.submit(job).add_done_callback(acknowledged(job.job_id))
        producer.flush(300)
    report.submitted = len(acked)
    return acked


def run(plan: Plan, log_dir: Path | None = None) -> Report:
    """Run the whole scenario on a broker of its own; returns the verdict."""
    report = Report(plan)
    rng = random.Random(plan.seed)
    tmp = Path(tempfile.mkdtemp(prefix="chaos-", dir=cache_dir()))
    logs = log_dir or tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = start_cluster(cache_dir(), plan.nodes)
    receiver = FlappingReceiver()
    receiver.start()
    s = _settings(cluster.bootstrap_servers, f"chaos{uuid.uuid4().hex[:6]}", cluster.replication_factor)
    create_topics(
        s,
        [
            TopicSpec(s.jobs_topic, plan.partitions, {"cleanup.policy": "delete"}),
            TopicSpec(s.high_topic, 1, {"cleanup.policy": "delete"}),
            TopicSpec(s.results_topic, plan.partitions, {"cleanup.policy": "compact"}),
            TopicSpec(s.dlq_topic, 1, {"cleanup.policy": "delete"}),
        ],
    )
    if plan.group_protocol == "consumer":
        workers, sink = f"{s.jobs_topic}-workers", f"{s.jobs_topic}-sink"
        for group in (workers, f"{workers}.high", sink, f"{sink}.retry"):
            set_group_session(s, group, 6000, 500)
    procs = Processes(_child_env(s, plan, tmp), logs, report, plan.workers)
    watch = ResultsWatch(cluster.bootstrap_servers, s.results_topic)
    acked: set[str] = set()
    started = time.monotonic()
    supervising = threading.Event()

    def supervisor() -> None:
        while not supervising.wait(0.5):
            procs.supervise()

    try:
        procs.start()
        threading.Thread(target=supervisor, name="supervisor", daemon=True).start()
        t0 = time.monotonic()
        events = _schedule(plan, procs, cluster, report, rng, s.jobs_topic)
        injector = threading.Thread(target=_inject, args=(events, t0, report, supervising), daemon=True)
        injector.start()
        flapper = threading.Thread(target=_flap, args=(plan, receiver, report, t0, supervising), daemon=True)
        flapper.start()
        acked = _submit(plan, s, receiver.url, report, t0)
        injector.join()
        flapper.join()
        deadline = time.monotonic() + plan.settle_timeout_s
        while time.monotonic() < deadline:
            if receiver.mode == "ok" and acked <= watch.ids and acked <= receiver.deliveries.keys():
                break
            time.sleep(0.5)
        time.sleep(3.0)  # let late duplicates (redeliveries in flight) land before counting them
    finally:
        report.seconds = time.monotonic() - started
        supervising.set()
        procs.stop_all()
        watch.close()
        _verify(report, cluster.bootstrap_servers, s, acked, receiver)
        report.read_again = sum(
            log.read_bytes().count(b"already has a committed result") for log in logs.glob("*worker*.log")
        )
        receiver.stop()
        cluster.stop()
    return report


def _busiest_leader(cluster: LocalCluster, topic: str) -> int:
    """The node.id leading most of `topic`'s partitions (the first node if metadata is unreadable)."""
    if len(cluster.nodes) == 1:
        return 1
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers, "log_level": 0})
    try:
        leaders = Counter(
            p.leader for p in admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
        )
    except Exception:
        return 1
    return leaders.most_common(1)[0][0] if leaders else 1


def _verify(
    report: Report, bootstrap: str, s: KafkaSettings, acked: set[str], receiver: FlappingReceiver
) -> None:
    per_job: Counter[str] = Counter()
    final: dict[str, str] = {}
    for key, value in _read_all(bootstrap, s.results_topic):
        if key is None or value is None:
            continue
        job_id = key.decode()
        per_job[job_id] += 1
        final[job_id] = orjson.loads(value).get("status", "?")  # the compacted view keeps the last
    report.result_records = sum(per_job.values())
    report.jobs_with_result = len(acked & final.keys())
    report.lost = len(acked - final.keys())
    report.unknown_results = len(final.keys() - acked)
    report.not_succeeded = sum(1 for j in acked & final.keys() if final[j] != "succeeded")
    report.duplicate_results = report.result_records - len(per_job)
    report.webhooks_expected = len(acked)
    delivered = receiver.deliveries
    report.webhooks_delivered = len(acked & delivered.keys())
    report.lost_webhooks = len(acked - delivered.keys())
    report.duplicate_deliveries = sum(len(ids) - 1 for ids in delivered.values())
    report.webhook_id_mismatches = sum(1 for j, ids in delivered.items() for i in ids if i != j)
    report.webhook_requests = receiver.requests
    report.webhook_refusals = receiver.refused
    report.bad_signatures = receiver.bad_signatures
    report.job_dlq = len(_read_all(bootstrap, s.dlq_topic, idle_s=2.0))
    report.delivery_dlq = len(_read_all(bootstrap, f"{s.deliveries_topic}.dlq", idle_s=2.0))


def write_table(path: Path, report: Report, command: str) -> None:
    """Replace the chaos section of RELIABILITY.md (between its markers) with this run's table."""
    mode = "exactly-once" if report.plan.exactly_once else "at-least-once"
    if report.plan.nodes > 1:
        mode += f"-{report.plan.nodes}-nodes"
    begin, end = f"<!-- chaos:{mode}:begin -->", f"<!-- chaos:{mode}:end -->"
    text = path.read_text()
    section = f"{begin}\nRun by `{command}` on {time.strftime('%Y-%m-%d')}:\n\n{report.table()}\n{end}"
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text += "\n" + section + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--exactly-once", action="store_true")
    parser.add_argument("--group-protocol", choices=["classic", "consumer"], default="classic")
    parser.add_argument("--nodes", type=int, default=1, help="3: a KRaft cluster whose leader is killed")
    parser.add_argument("--write", type=Path, help="put the table into this file (RELIABILITY.md)")
    parser.add_argument("--pause-at", help="seconds at which to freeze a worker (default 16,33; '' for none)")
    args = parser.parse_args()
    plan = Plan(
        jobs=args.jobs, exactly_once=args.exactly_once, nodes=args.nodes, group_protocol=args.group_protocol
    )
    if args.pause_at is not None:
        plan = dataclasses.replace(plan, pauses_at=tuple(float(t) for t in args.pause_at.split(",") if t))
    report = run(plan)
    print("\n".join(sorted(report.events)))
    print(report.table())
    if args.write:
        write_table(args.write, report, " ".join(["python -m tests.chaos.harness", *sys.argv[1:]]))
    for failure in report.failures():
        print(f"FAILED: {failure}")
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
