"""The worker: one consumer-group member feeding an async engine and committing in order.

One loop iteration reads: poll -> admit -> publish finished -> commit -> backpressure.

The guarantee is in the commit order. A job's offset becomes committable only when its Result (or
its DLQ record) has been acknowledged by Kafka (acks=all, delivery callback), and a partition's
offset is committed only up to the first job that is not so acknowledged (OffsetTracker). So a
crash at any point re-delivers, and never skips, a job whose result is not stored.

Rebalances: on revoke, publish what is finished, flush, commit what is done, cancel the rest.
On lost, cancel everything of those partitions without committing.
Shutdown is a state: stop admitting (pause), drain in-flight work within drain_timeout_s, flush,
commit, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import signal
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from consumer.answers import Cancelled, answer, dlq_headers
from consumer.backlog import Backlog
from consumer.engine import Completion, Engine, make_engine
from sluice.cancels import Cancellations, open_cancellations
from sluice.clients import ConsumerLike, MessageLike, TransactionalProducer
from sluice.commits import Commits, Committer
from sluice.contract import (
    Job,
    decode_job,
    job_digest,
    utcnow,
)
from sluice.errors import ContractError, EngineDeadError, RetryableError
from sluice.heap import settle_heap
from sluice.kafka import consumer_config, header, header_pairs, is_record, position, produce, producer_config
from sluice.logs import JobLog
from sluice.loop import run as run_loop
from sluice.metrics import WorkerMetrics, start_metrics_server
from sluice.offsets import TP, OffsetTracker
from sluice.settings import WorkerSettings
from sluice.store import ResultStore, StoreFollower
from sluice.topics import pool_topics
from sluice.tracing import TRACEPARENT, child_traceparent, ensure_traceparent
from sluice.transactions import Record, Transactions
from sluice.urlpolicy import ForbiddenUrlError

__all__ = ["Worker", "create_worker"]

log = logging.getLogger("sluice.worker")

# The columns of the "jobs done" access line, in the order of the tuple each job adds.
ACCESS_FIELDS = ("job_id", "status", "error_code", "output_tokens", "traceparent")


class State(enum.Enum):
    RUNNING = "running"
    DRAINING = "draining"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(slots=True)
class _InFlight:
    job: Job
    tp: TP
    offset: int
    epoch: int
    traceparent: str
    enqueued_at: datetime | None
    started_at: datetime
    started: float
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Admitted:
    """A decoded job on its way to the engine (or to the idempotency cache's answer)."""

    msg: MessageLike
    epoch: int
    job: Job
    traceparent: str


class Worker:
    """Consumes jobs, runs them on an Engine, publishes Results, commits in order."""

    def __init__(
        self,
        settings: WorkerSettings,
        engine: Engine,
        consumers: dict[str, ConsumerLike],
        producer: TransactionalProducer,
        metrics: WorkerMetrics,
        results_view: StoreFollower | None = None,
        cancels: Cancellations | None = None,
    ) -> None:
        self.settings = settings
        self.results_view = results_view
        self.cancels = cancels
        self.engine = engine
        # One consumer (and group) per jobs topic: each topic's partitions are then balanced across
        # workers on their own. With one subscription to both, cooperative-sticky balances the total
        # count and can leave a worker holding only the (often empty) high-priority partitions.
        self.consumers = consumers
        self.producer = producer
        self.metrics = metrics
        self.tracker = OffsetTracker()
        self.transactions = (
            Transactions(
                producer, consumers, self.tracker, settings.commit_interval_s, on_commit=metrics.commits.inc
            )
            if settings.exactly_once
            else None
        )
        self.committer: Commits = self.transactions or Committer(
            self.tracker, consumers, settings.commit_interval_s, on_commit=metrics.commits.inc
        )
        self.max_in_flight = settings.max_in_flight or 2 * engine.max_concurrency
        self.url_policy = settings.url_policy()
        # The access log: every published result, in columnar INFO lines of up to 50 jobs (sluice.logs).
        self.job_log = JobLog("sluice.worker.jobs", "jobs done", ACCESS_FIELDS)
        self._access = tuple(column.append for column in self.job_log.columns)
        jobs_topic, high_topic = pool_topics(settings, settings.pool)
        self.backlog = Backlog(
            [t for t in (high_topic, jobs_topic) if t],
            capacity=settings.max_buffered or self.max_in_flight,
            low_water=settings.low_water,
            high_topic=high_topic or None,
            normal_share=settings.normal_share,
        )
        self.state = State.RUNNING
        self._running: dict[int, _InFlight] = {}
        self._finished: deque[tuple[_InFlight, Completion | Cancelled | BaseException]] = deque()
        self._wake = asyncio.Event()
        self._drained = False  # the drain committed what was done
        self._closing = False  # consumers closing: their last revoke must not commit (_on_revoke)
        self._paused_topics: set[str] = set()
        self._fatal: str | None = None
        self._ids = 0
        self._progress = time.monotonic()  # last time a job finished (or the first one started)
        self.stats = {"succeeded": 0, "failed": 0, "expired": 0, "cancelled": 0, "dlq": 0, "replayed": 0}
        self._reported = dict(self.stats)
        self._unreported_tokens = 0

    # ---- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful drain (SIGTERM/SIGINT)."""
        if self.state is State.RUNNING:
            log.info("drain requested", extra={"in_flight": len(self._running)})
            self.state = State.DRAINING
            self._wake.set()

    async def run(self) -> int:
        """Run until stopped; returns the process exit code (0 clean, 1 fatal)."""
        await self.engine.start()
        if self.transactions is not None:
            self.transactions.start()
        if self.cancels is not None:
            self.cancels.start()
        if self.results_view is not None:
            self.results_view.start()
            caught_up = self.results_view.catch_up(self.settings.idempotency_catchup_s)
            log.info(
                "results view ready",
                extra={"caught_up": caught_up, "results": self.results_view.store.count()},
            )
        settle_heap(young_threshold=20_000)
        for topic, consumer in self.consumers.items():
            consumer.subscribe(
                [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        log.info("worker started", extra={"worker_id": self.settings.worker_id})
        try:
            await self._loop()
            await self._drain()
        finally:
            await self._close()
        return 1 if self.state is State.FAILED else 0

    async def _loop(self) -> None:
        """poll -> admit -> publish finished -> commit -> backpressure, until asked to stop."""
        while self.state is State.RUNNING:
            polled = self._poll()
            self._admit()
            self._publish_finished()
            self.committer.maybe_commit()
            self._apply_backpressure()
            self._watchdog()
            self.job_log.flush()
            if not polled and not self._finished:
                await self._idle()
            else:
                await asyncio.sleep(0)  # let engine tasks run

    async def _idle(self) -> None:
        self._wake.clear()
        if self._finished:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.poll_timeout_s)

    async def _drain(self) -> None:
        """Stop taking work; let in-flight jobs finish within the drain timeout; publish; commit."""
        self._pause_all()
        deadline = time.monotonic() + (self.settings.drain_timeout_s if self.state is State.DRAINING else 0)
        while self._running and time.monotonic() < deadline and self.state is not State.FAILED:
            for consumer in self.consumers.values():
                consumer.consume(1, 0)  # keeps group membership and serves rebalance callbacks
            self._publish_finished()
            await self._idle()
        left = list(self._running.values())
        cancelled = [item.task for item in left if item.task is not None]
        for task in cancelled:
            task.cancel()
        if cancelled:  # let each job's cancellation reach the engine (vLLM aborts it) before close
            await asyncio.wait(cancelled, timeout=5)
        if left:
            log.warning("drain timeout: %d jobs left for redelivery", len(left))
        self._publish_finished()
        self.job_log.flush(force=True)
        self.producer.flush(30)
        self.committer.commit(sync=True)
        self._drained = True

    async def _close(self) -> None:
        if not self._drained:  # stopped by an error: what is done is committed here, not in close()
            try:
                self.committer.commit(sync=True)
            except Exception:
                log.exception("commit before close failed: those jobs are delivered again")
        self._closing = True
        for consumer in self.consumers.values():
            try:
                consumer.close()
            except Exception:
                log.exception("consumer close failed")
        self.producer.flush(30)
        if self.cancels is not None:
            self.cancels.close()
        await self.engine.close()
        self._report()
        if self.state is State.DRAINING:
            self.state = State.STOPPED
        log.info("worker stopped", extra={"state": self.state.value, **self.stats})

    def _watchdog(self) -> None:
        """An engine that finishes nothing for engine_watchdog_s while jobs wait on it is hung:
        commit what is done and exit non-zero, so the orchestrator restarts the worker."""
        if not self._running:
            self._progress = time.monotonic()  # measured from the first start
            return
        limit = self.settings.engine_watchdog_s
        if limit is not None and time.monotonic() - self._progress > limit:
            self._fail(f"engine watchdog: no job finished in {limit:g}s with {len(self._running)} in flight")

    def _fail(self, reason: str) -> None:
        log.error("worker cannot go on: %s", reason)
        self._fatal = reason
        self.state = State.FAILED
        self._wake.set()

    # ---- poll and admit --------------------------------------------------------------------

    def _poll(self) -> int:
        """Move records from the client into the per-topic backlogs (and new results into the
        idempotency view); returns how many jobs arrived.

        Called every iteration, paused or not: it serves rebalance callbacks and keeps the member
        alive (max.poll.interval.ms), so no generation time can get it evicted.
        """
        if self.results_view is not None:
            self.results_view.step(500)
        if self.cancels is not None:
            for job_id in self.cancels.step():
                self._cancel(job_id)
        messages: list[MessageLike] = []
        for topic, consumer in self.consumers.items():
            room = max(1, self.backlog.room(topic))
            messages += consumer.consume(min(room, self.settings.batch_size), 0)
        for msg in messages:
            if not is_record(msg, log):
                continue
            tp, offset = position(msg)
            self.backlog.push(msg, self.tracker.add(tp, offset))
        return len(messages)

    def _admit(self) -> None:
        """Start backlog jobs on the engine while it has room, high priority first.

        Jobs are decoded first and looked up in the idempotency cache together: one SQLite query
        per admitted batch, not one per job.
        """
        room = self.max_in_flight - len(self._running)
        batch: list[_Admitted] = []
        while len(batch) < room:
            entry = self.backlog.pop()
            if entry is None:
                break
            msg, epoch = entry
            tp, _ = position(msg)
            if self.tracker.epoch(tp) != epoch:  # revoked while waiting: its new owner runs it
                continue
            admitted = self._decode(msg, epoch)
            if admitted is not None:
                batch.append(admitted)
        if not batch:
            return
        answered: dict[str, str | None] = {}
        if self.results_view is not None:
            answered = self.results_view.store.digests([a.job.job_id for a in batch])
        for admitted in batch:
            if admitted.job.job_id in answered:
                self._answer_from_store(admitted, answered[admitted.job.job_id])
            else:
                self._start(admitted)

    def _decode(self, msg: MessageLike, epoch: int) -> _Admitted | None:
        """The job in a record, or None when the record went to the DLQ instead."""
        tp, _ = position(msg)
        traceparent = ensure_traceparent(header(msg.headers(), TRACEPARENT))
        value = msg.value()
        if value is not None and len(value) > self.settings.max_job_bytes:
            reason = f"job record is {len(value)} bytes; the limit is {self.settings.max_job_bytes}"
            self._to_dlq(msg, tp, epoch, "message_too_large", reason, traceparent)
            return None
        try:
            job = decode_job(value)
            if job.webhook_url is not None:  # a producer that skipped the submit-time check
                self.url_policy.check_url(job.webhook_url)
        except (ContractError, ForbiddenUrlError) as exc:
            self._to_dlq(msg, tp, epoch, exc.code, str(exc), traceparent)
            return None
        return _Admitted(msg, epoch, job, traceparent)

    def _start(self, admitted: _Admitted) -> None:
        msg, epoch, job, traceparent = admitted.msg, admitted.epoch, admitted.job, admitted.traceparent
        tp, offset = position(msg)
        _, ts_ms = msg.timestamp()
        enqueued = datetime.fromtimestamp(ts_ms / 1000, UTC) if ts_ms > 0 else None
        now = utcnow()
        item = _InFlight(job, tp, offset, epoch, traceparent, enqueued, now, time.monotonic())
        if job.deadline is not None and job.deadline <= now:
            self._publish(item, None)
            return
        if self.cancels is not None and job.job_id in self.cancels:
            self._publish(item, Cancelled())
            return
        if enqueued is not None:
            self.metrics.queue_wait.observe(max(0.0, (now - enqueued).total_seconds()))
        self._ids += 1
        key = self._ids
        self._running[key] = item
        item.task = asyncio.create_task(self._run_job(key, item))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job admitted", extra={"job_id": job.job_id, "traceparent": traceparent})

    def _cancel(self, job_id: str) -> None:
        """Abort the job if it runs here (the engine drops it) and answer it `cancelled`."""
        for key, item in list(self._running.items()):
            if item.job.job_id == job_id:
                del self._running[key]
                if item.task is not None:
                    item.task.cancel()
                self._finished.append((item, Cancelled()))

    def _answer_from_store(self, admitted: _Admitted, prior: str | None) -> None:
        """The job id already has a result: re-publish it (same job) or dead-letter the job (a
        different job reusing the id) instead of running it again."""
        assert self.results_view is not None
        msg, epoch, job, traceparent = admitted.msg, admitted.epoch, admitted.job, admitted.traceparent
        tp, offset = position(msg)
        digest = job_digest(job)
        stored = self.results_view.store.result(job.job_id)
        if stored is None:  # deleted (tombstone) since the lookup: run it
            self._start(admitted)
            return
        if prior is not None and prior != digest:
            reason = (
                f"job id {job.job_id!r} already has a result for a different job "
                f"(digest {prior}, this one {digest}); not run"
            )
            self._to_dlq(msg, tp, epoch, "job_id_conflict", reason, traceparent)
            return
        self.stats["replayed"] += 1
        self.metrics.replayed.inc()
        if self.transactions is not None:
            # The view reads only committed results, so this one is in the results topic already:
            # exactly once means no second record for the id, only the offset committed past it.
            self.tracker.done(tp, offset, epoch)
            where = {"job_id": job.job_id, "partition": tp[1], "offset": offset, "traceparent": traceparent}
            log.info("job already has a committed result: not published again", extra=where)
            return

        child = child_traceparent(traceparent).encode()
        record = (self.settings.results_topic, job.job_id.encode(), stored, [(TRACEPARENT, child)])
        self._produce(record, (tp, offset, epoch), f"stored result for job {job.job_id}")

    async def _run_job(self, key: int, item: _InFlight) -> None:
        # The outcome is queued by the task itself rather than by a done-callback: one event-loop
        # callback less per job.
        outcome: Completion | Exception
        retries = 0
        while True:
            try:
                outcome = await self.engine.generate(item.job)
                break
            except RetryableError as exc:  # transient: the same request may succeed shortly
                retries += 1
                if retries > self.settings.engine_retries:
                    outcome = exc
                    break
                delay = self.settings.engine_retry_backoff_s * 2 ** (retries - 1)
                extra = {"job_id": item.job.job_id, "traceparent": item.traceparent}
                log.warning("engine error, retry %d in %.1fs: %s", retries, delay, exc, extra=extra)
                await asyncio.sleep(delay)
            except Exception as exc:
                outcome = exc
                break
        if self._running.pop(key, None) is not None:  # else revoked or lost meanwhile
            self._finished.append((item, outcome))
            self._progress = time.monotonic()
            self._wake.set()

    # ---- publish ---------------------------------------------------------------------------

    def _publish_finished(self) -> None:
        while self._finished:
            item, outcome = self._finished.popleft()
            if self.tracker.epoch(item.tp) != item.epoch:
                continue  # partition revoked since; its new owner runs the job again
            if isinstance(outcome, EngineDeadError):
                self._fail(f"engine died: {outcome}")
                return
            self.metrics.generation.observe(time.monotonic() - item.started)
            self._publish(item, outcome)
        self._report()
        self.producer.poll(0)

    def _report(self) -> None:
        """Hand per-job counts to Prometheus once per loop turn, not per job: its locked inc() per
        job was ~5 % of the worker's CPU with an instant engine (py-spy)."""
        for status, counter in self.metrics.job_status.items():
            delta = self.stats[status] - self._reported[status]
            if delta:
                counter.inc(delta)
                self._reported[status] = self.stats[status]
        if self._unreported_tokens:
            self.metrics.output_tokens.inc(self._unreported_tokens)
            self._unreported_tokens = 0
        self.metrics.in_flight.set(len(self._running))

    def _publish(self, item: _InFlight, outcome: Completion | Cancelled | BaseException | None) -> None:
        """Produce a finished job's Result (outcome None: its deadline passed before it ran)."""
        job = item.job
        done = answer(job, outcome, item.enqueued_at, item.started_at, self.settings.worker_id)
        if done.error is not None:
            self.metrics.failures.labels(done.error.code).inc()  # not per success: off the hot path
            if outcome is not None:
                log.warning(
                    "job failed: %s", outcome, extra={"job_id": job.job_id, "traceparent": item.traceparent}
                )
        self.stats[done.status] += 1
        self._unreported_tokens += done.output_tokens
        child = child_traceparent(item.traceparent)
        record = (
            self.settings.results_topic,
            job.job_id.encode(),
            done.data,
            [(TRACEPARENT, child.encode())],
        )
        self._produce(record, (item.tp, item.offset, item.epoch), f"result for job {job.job_id}")
        if self.job_log.enabled:
            add_id, add_status, add_code, add_tokens, add_traceparent = self._access
            add_id(job.job_id)
            add_status(done.status)
            add_code(None if done.error is None else done.error.code)
            add_tokens(done.output_tokens)
            add_traceparent(child)

    def _to_dlq(self, msg: MessageLike, tp: TP, epoch: int, code: str, reason: str, traceparent: str) -> None:
        _, offset = position(msg)
        self.stats["dlq"] += 1
        self.metrics.dlq.labels(code).inc()
        extra = {"code": code, "partition": tp[1], "offset": offset, "traceparent": traceparent}
        log.warning("message sent to DLQ: %s", reason, extra=extra)

        headers = dlq_headers(header_pairs(msg.headers()), code, reason, tp, offset, self.settings.worker_id)
        record = (self.settings.dlq_topic, msg.key(), msg.value(), headers)
        self._produce(record, (tp, offset, epoch), f"DLQ record for {tp}@{offset}")

    def _produce(self, record: Record, source: tuple[TP, int, int], what: str) -> None:
        """Send the answer to the job at `source` (partition, offset, epoch). At least once: now,
        and the offset becomes committable once Kafka acknowledged it. Exactly once: held for the
        transaction that commits the offset past it (sluice.transactions)."""
        if self.transactions is not None:
            self.transactions.produce(*source, record)
            return
        tp, offset, epoch = source

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is None:
                self.tracker.done(tp, offset, epoch)
            else:
                self._fail(f"{what} not stored: {err}")

        topic, key, value, headers = record
        produce(self.producer, topic, value, key, headers, delivered)

    # ---- commit and backpressure -----------------------------------------------------------

    def _apply_backpressure(self) -> None:
        """Pause a topic while its backlog is full (or, for the normal topic, while high-priority
        jobs wait); resume it once its backlog is below the low-water mark."""
        wanted = self.backlog.topics_to_pause()
        if wanted == self._paused_topics:
            return
        for topic in wanted ^ self._paused_topics:
            consumer = self.consumers[topic]
            parts = [p for p in consumer.assignment() if p.topic == topic]
            if parts:
                (consumer.pause if topic in wanted else consumer.resume)(parts)
        self._paused_topics = wanted
        self.metrics.paused.set(len(wanted))

    def _pause_all(self) -> None:
        for consumer in self.consumers.values():
            assignment = consumer.assignment()
            if assignment:
                consumer.pause(assignment)
        self._paused_topics = set(self.backlog.topics)
        self.metrics.paused.set(len(self._paused_topics))

    # ---- rebalance callbacks (run inside consume()) ----------------------------------------

    def _on_assign(self, consumer: ConsumerLike, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("assigned").inc(len(partitions))
        for p in partitions:
            self.tracker.assign((p.topic, p.partition))
        consumer.incremental_assign(partitions)
        paused = [p for p in partitions if p.topic in self._paused_topics or self.state is not State.RUNNING]
        if paused:
            consumer.pause(paused)
        log.info("partitions assigned", extra=self._partition_fields(partitions))

    def _on_revoke(self, consumer: ConsumerLike, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoked").inc(len(partitions))
        tps = [(p.topic, p.partition) for p in partitions]
        self._publish_finished()
        if self.transactions is None:
            self.producer.flush(10)
        # close() revokes every partition through here after _close has committed: a commit from
        # that callback never returned under KIP-848's group protocol once the group had moved a
        # partition to this member during its drain (bench/rebalance.py found the hang).
        if not self._closing:
            self.committer.commit(sync=True, tps=tps)
        self._forget(tps)
        consumer.incremental_unassign(partitions)
        log.info("partitions revoked", extra=self._partition_fields(partitions))

    def _on_lost(self, consumer: ConsumerLike, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("lost").inc(len(partitions))
        self._forget([(p.topic, p.partition) for p in partitions])
        consumer.incremental_unassign(partitions)
        log.warning("partitions lost", extra=self._partition_fields(partitions))

    def _partition_fields(self, partitions: list[TopicPartition]) -> dict[str, Any]:
        return {
            "worker_id": self.settings.worker_id,
            "partitions": [f"{p.topic}:{p.partition}" for p in partitions],
        }

    def _forget(self, tps: list[TP]) -> None:
        gone = set(tps)
        if self.transactions is not None:
            self.transactions.forget(tps)
        self.backlog.drop(gone)
        for tp in tps:
            self.tracker.revoke(tp)
        for key, item in list(self._running.items()):
            if item.tp in gone:
                del self._running[key]
                if item.task is not None:
                    item.task.cancel()


def create_worker(settings: WorkerSettings, engine: Engine | None = None) -> Worker:
    """Build a Worker with real Kafka clients from settings (the engine can be injected)."""
    extra = {
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "client.id": settings.worker_id,
    }
    jobs_topic, high_topic = pool_topics(settings, settings.pool)
    consumers: dict[str, ConsumerLike] = {
        jobs_topic: Consumer(consumer_config(settings, settings.group_id, **extra))
    }
    if high_topic:
        consumers[high_topic] = Consumer(consumer_config(settings, settings.high_group_id, **extra))
    producer_extra: dict[str, Any] = {"client.id": settings.worker_id}
    if settings.exactly_once:
        # Unique per worker instance; fencing of a zombie instance comes from the consumer group
        # generation sent with the offsets (KIP-447), not from reusing the id.
        producer_extra["transactional.id"] = f"{settings.group_id}-{settings.worker_id}"
        producer_extra["transaction.timeout.ms"] = settings.transaction_timeout_ms
    producer = Producer(producer_config(settings, **producer_extra))
    metrics = WorkerMetrics()
    if settings.metrics_port is not None:
        start_metrics_server(settings.metrics_port, metrics.registry)
    view = None
    if settings.idempotency:
        folder = settings.idempotency_dir or Path(tempfile.gettempdir())
        name = re.sub(
            r"[^A-Za-z0-9_.-]", "_", f"sluice-results-{settings.results_topic}-{settings.worker_id}"
        )
        view = StoreFollower(settings, ResultStore(folder / f"{name}.db"), with_jobs=False, bulk=True)
    cancels = open_cancellations(settings)
    return Worker(settings, engine or make_engine(settings), consumers, producer, metrics, view, cancels)


def run_worker(settings: WorkerSettings, engine: Engine | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the exit code."""

    async def main() -> int:
        worker = create_worker(settings, engine)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        return await worker.run()

    return run_loop(main())
