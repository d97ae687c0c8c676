"""The results sink: consumes inference-results and POSTs each result with a webhook URL to it.

Delivery is signed per Standard Webhooks (webhook-id = job id, the same on every retry). A result's
offset becomes committable only when its delivery is finished: acknowledged with 2xx, or given up
after max_attempts (logged at error level with the job id and counted). Deliveries run
concurrently; the offset tracker commits in order, so a crash re-delivers and never skips.

This is the foundation's basic path. Durable retry schedules, per-endpoint isolation and a
delivery DLQ are the next step (see the README's roadmap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import httpx
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from results_sink.signing import decode_secret, signature_headers
from sluice.commits import Committer
from sluice.contract import decode_result
from sluice.errors import ContractError
from sluice.kafka import consumer_config, header, position
from sluice.metrics import SinkMetrics, start_metrics_server
from sluice.offsets import TP, OffsetTracker
from sluice.settings import SinkSettings
from sluice.tracing import TRACEPARENT, child_traceparent, ensure_traceparent

__all__ = ["Sink", "create_sink", "run_sink"]

log = logging.getLogger("sluice.sink")
_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class Sink:
    """Webhook delivery from the results topic."""

    def __init__(
        self,
        settings: SinkSettings,
        consumer: Consumer,
        client: httpx.AsyncClient,
        metrics: SinkMetrics,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.client = client
        self.metrics = metrics
        self.key = decode_secret(settings.webhook_secret.get_secret_value())
        self.tracker = OffsetTracker()
        self.committer = Committer(
            self.tracker, {settings.results_topic: consumer}, settings.commit_interval_s
        )
        self._tasks: dict[asyncio.Task[None], TP] = {}
        self._stopping = False
        self._wake = asyncio.Event()
        self._paused = False
        self.stats = {"delivered": 0, "failed": 0, "skipped": 0, "invalid": 0}

    def stop(self) -> None:
        """Stop consuming; in-flight deliveries finish (bounded by their retries), then commit."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> int:
        """Deliver until stopped; returns the exit code."""
        self.consumer.subscribe(
            [self.settings.results_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("sink started")
        try:
            while not self._stopping:
                room = max(1, self.settings.concurrency - len(self._tasks))
                messages = self.consumer.consume(room, 0)
                for msg in messages:
                    self._admit(msg)
                self.committer.maybe_commit()
                self._backpressure()
                if not messages:
                    await self._idle()
                else:
                    await asyncio.sleep(0)
            if self._tasks:
                await asyncio.wait(list(self._tasks))
            self.committer.commit(sync=True)
        finally:
            self.consumer.close()
            await self.client.aclose()
            log.info("sink stopped", extra=self.stats)
        return 0

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), 0.05)

    def _admit(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", err)
            return
        tp, offset = position(msg)
        epoch = self.tracker.add(tp, offset)
        try:
            result = decode_result(msg.value())
        except ContractError as exc:
            # Not ours to repair: a foreign or newer record on the results topic. Say so and move on.
            self.stats["invalid"] += 1
            log.error("undecodable record on results topic at %s@%d: %s", tp, offset, exc)
            self.tracker.done(tp, offset, epoch)
            return
        if result.webhook_url is None:
            self.stats["skipped"] += 1
            self.metrics.skipped.inc()
            self.tracker.done(tp, offset, epoch)
            return
        traceparent = child_traceparent(ensure_traceparent(header(msg.headers(), TRACEPARENT)))
        body = msg.value() or b""
        _, ts_ms = msg.timestamp()
        produced = ts_ms / 1000 if ts_ms > 0 else time.time()
        task = asyncio.create_task(
            self._deliver(result.webhook_url, result.job_id, body, traceparent, produced)
        )
        self._tasks[task] = tp
        task.add_done_callback(lambda t: self._on_delivered(t, tp, offset, epoch))

    def _on_delivered(self, task: asyncio.Task[None], tp: TP, offset: int, epoch: int) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled():
            self.tracker.done(tp, offset, epoch)
        self.metrics.in_flight.set(len(self._tasks))
        self._wake.set()

    async def _deliver(self, url: str, job_id: str, body: bytes, traceparent: str, produced: float) -> None:
        extra = {"job_id": job_id, "traceparent": traceparent, "url": url}
        last = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            headers = signature_headers(self.key, job_id, body)
            headers.update({"content-type": "application/json", TRACEPARENT: traceparent})
            try:
                response = await self.client.post(url, content=body, headers=headers)
                status = response.status_code
                if 200 <= status < 300:
                    self.metrics.attempts.labels("2xx").inc()
                    self.metrics.deliveries.labels("delivered").inc()
                    self.metrics.latency.observe(max(0.0, time.time() - produced))
                    self.stats["delivered"] += 1
                    log.debug("webhook delivered", extra={**extra, "attempt": attempt})
                    return
                self.metrics.attempts.labels(f"{status // 100}xx").inc()
                last = f"HTTP {status}"
                if status not in _RETRY_STATUSES and status < 500:
                    break
            except httpx.HTTPError as exc:
                self.metrics.attempts.labels("error").inc()
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.settings.max_attempts:
                log.info("webhook attempt %d failed: %s", attempt, last, extra=extra)
                await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
        self.stats["failed"] += 1
        self.metrics.deliveries.labels("failed").inc()
        log.error("webhook delivery gave up: %s", last, extra={**extra, "attempts": attempt})

    def _backpressure(self) -> None:
        full = len(self._tasks) >= self.settings.concurrency
        if full != self._paused:
            assignment = self.consumer.assignment()
            if assignment:
                (self.consumer.pause if full else self.consumer.resume)(assignment)
            self._paused = full

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.tracker.assign((p.topic, p.partition))
        consumer.incremental_assign(partitions)
        if self._paused:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.committer.commit(sync=True, tps=tps)
        self._forget(tps)
        consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget([(p.topic, p.partition) for p in partitions])
        consumer.incremental_unassign(partitions)

    def _forget(self, tps: list[TP]) -> None:
        gone = set(tps)
        for tp in tps:
            self.tracker.revoke(tp)
        for task, tp in list(self._tasks.items()):
            if tp in gone:
                task.cancel()


def create_sink(settings: SinkSettings, transport: httpx.AsyncBaseTransport | None = None) -> Sink:
    """Build a Sink from settings; `transport` lets tests inject httpx.MockTransport."""
    consumer = Consumer(
        consumer_config(
            settings,
            settings.group_id,
            **{
                "session.timeout.ms": settings.session_timeout_ms,
                "heartbeat.interval.ms": settings.heartbeat_interval_ms,
            },
        )
    )
    client = httpx.AsyncClient(
        timeout=settings.timeout_s,
        follow_redirects=False,
        limits=httpx.Limits(
            max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
        ),
        headers={"user-agent": "sluice-sink/0.1"},
        transport=transport,
    )
    metrics = SinkMetrics()
    if settings.metrics_port is not None:
        start_metrics_server(settings.metrics_port, metrics.registry)
    return Sink(settings, consumer, client, metrics)


def run_sink(settings: SinkSettings) -> int:
    """Run the sink until SIGTERM/SIGINT."""

    async def main() -> int:
        sink = create_sink(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sink.stop)
        return await sink.run()

    return asyncio.run(main())
