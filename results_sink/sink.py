"""The results sink: delivers each result to its webhook and to matching subscriptions.

For every record on the results topic the sink makes one delivery per target (the job's own
webhook_url, and each static subscription whose filters match), signed per Standard Webhooks with
webhook-id = job id on every attempt and every endpoint.

Nothing waits in memory for long, so nothing is lost and no endpoint holds up another:
- the first attempt is made at once, within the endpoint's connection limit; an endpoint whose
  wait line is full, or whose circuit breaker is open, gets its deliveries deferred;
- a failed attempt (or a deferral) is produced to a delay-tier retry topic with its due time and
  attempt history (results_sink/schedule.py); the sink consumes those topics too, holding each
  tier partition paused until its first record is due;
- after the last attempt, or on 410 Gone, or for a URL the policy forbids, the delivery goes to
  the delivery dead-letter topic with its history (`sluice dlq list|replay`).
A source record's offset becomes committable only when every delivery made from it is settled:
acknowledged with 2xx, or handed to a retry topic or the DLQ and acknowledged by Kafka there.
A crash therefore re-delivers (duplicates carry the same webhook-id) and never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Producer, TopicPartition

from results_sink.deliveries import Attempt, Delivery, decode_delivery
from results_sink.disabled import DisabledEndpoints, disabled_topic, endpoints_reader
from results_sink.endpoints import Endpoint, Endpoints
from results_sink.http import AiohttpPoster, Outcome, Poster
from results_sink.schedule import Intake, RetryPlan, intake, parse_retry_after
from results_sink.signing import decode_secret, signature_headers
from results_sink.verdicts import Verdict, attempt_class, judge
from sluice.clients import ConsumerLike, MessageLike, ProducerLike
from sluice.clock import Every
from sluice.commits import Committer
from sluice.contract import decode_result
from sluice.errors import ConfigError, ContractError
from sluice.heap import settle_heap
from sluice.kafka import (
    consumer_config,
    ensure_topics,
    header,
    is_record,
    position,
    produce,
    producer_config,
)
from sluice.loop import run as run_loop
from sluice.metrics import SinkMetrics, start_metrics_server
from sluice.offsets import TP, OffsetTracker
from sluice.settings import SinkSettings
from sluice.topics import delivery_specs, events_topic
from sluice.tracing import TRACEPARENT, child_traceparent, ensure_traceparent
from sluice.urlpolicy import ForbiddenUrlError

__all__ = ["Sink", "create_sink", "run_sink"]

log = logging.getLogger("sluice.sink")


Target = tuple[str, str | None]  # a URL, and the subscription it is for (None: the job's own)


@dataclass(slots=True)
class _Source:
    """A consumed record and how many of the deliveries made from it are not yet settled."""

    tp: TP
    offset: int
    epoch: int
    remaining: int


@dataclass(slots=True)
class _Pending:
    """A delivery waiting in its endpoint's line or in a request."""

    delivery: Delivery
    source: _Source
    traceparent: str


class Sink:
    """Webhook delivery from the results topic and the retry tiers (see the module docstring)."""

    def __init__(
        self,
        settings: SinkSettings,
        results: ConsumerLike,
        retries: ConsumerLike,
        producer: ProducerLike,
        poster: Poster,
        metrics: SinkMetrics,
        disabled: DisabledEndpoints | None = None,
    ) -> None:
        self.settings = settings
        # Without a consumer of their topic (unit tests) disabled endpoints live in memory only.
        if disabled is None:
            disabled = DisabledEndpoints(disabled_topic(settings), None, producer)
        self.disabled = disabled
        self._disabled_read = Every(1.0)  # the topic of disabled endpoints, read about once a second
        metrics.disabled_endpoints.set_function(lambda: len(self.disabled))
        self.results = results
        self.retries = retries
        self.producer = producer
        self.poster = poster
        self.metrics = metrics
        self.plan = RetryPlan.of(settings.retry_schedule, settings.deliveries_topic, settings.retry_jitter)
        self._tier_of = {self.plan.tier_topic(t): t for t in self.plan.tiers}
        if not settings.webhook_secrets:
            raise ConfigError("a webhook signing secret is required (SLUICE_SINK_WEBHOOK_SECRETS)")
        self.keys = [decode_secret(s.get_secret_value()) for s in settings.webhook_secrets]
        self.subscriptions = {s.id: s for s in settings.subscriptions}
        self.sub_keys = {
            s.id: [decode_secret(k.get_secret_value()) for k in s.secrets] or self.keys
            for s in settings.subscriptions
        }
        self.policy = settings.url_policy()
        self.endpoints: Endpoints[_Pending] = Endpoints(
            settings.endpoint_concurrency, settings.breaker_failures, settings.breaker_cooldown_s
        )
        self.tracker = OffsetTracker()
        self.events_topic = events_topic(settings)
        consumers = {
            settings.results_topic: results,
            self.events_topic: results,
            **dict.fromkeys(self.plan.tier_topics, retries),
        }
        self.committer = Committer(self.tracker, consumers, settings.commit_interval_s)
        self._tasks: dict[asyncio.Task[None], tuple[_Pending, Endpoint[_Pending]]] = {}
        self._pending = 0  # deliveries in endpoint lines or in requests
        self._due: dict[TP, float] = {}  # retry partitions held until their head record is due
        self._held = False  # consumption paused because max_pending deliveries are in memory
        self._stopping = False
        self._closing = False  # consumers closing: their last revoke must not commit (_on_revoke)
        self._fatal: str | None = None
        self._wake = asyncio.Event()
        # Bound once: labels() per delivery is measurable on the hot path.
        self._delivered = metrics.deliveries.labels("delivered")
        self._attempts = functools.cache(metrics.attempts.labels)
        self.stats = {"delivered": 0, "retried": 0, "deferred": 0, "dead": 0, "skipped": 0, "invalid": 0}

    # ---- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop consuming; attempts in progress finish (bounded by the request timeout)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> int:
        """Deliver until stopped; returns the exit code (0, or 1 if a record could not be stored)."""
        callbacks: dict[str, Any] = {
            "on_assign": self._on_assign,
            "on_revoke": self._on_revoke,
            "on_lost": self._on_lost,
        }
        self.disabled.start()
        settle_heap()
        self.results.subscribe([self.settings.results_topic, self.events_topic], **callbacks)
        self.retries.subscribe(self.plan.tier_topics, **callbacks)
        log.info("sink started", extra={"retry_topics": self.plan.tier_topics})
        try:
            while not self._stopping and self._fatal is None:
                polled = self._poll_results() + self._poll_retries()
                self._release_due()
                self._sweep()
                self._follow_disabled()
                self.producer.poll(0)
                self.committer.maybe_commit()
                self._backpressure()
                if polled:
                    await asyncio.sleep(0)
                else:
                    await self._idle()
            await self._drain()
        finally:
            self._closing = True
            for consumer in (self.results, self.retries):
                consumer.close()
            self.disabled.close()
            await self.poster.close()
            log.info("sink stopped", extra=self.stats)
        return 1 if self._fatal else 0

    def _follow_disabled(self) -> None:
        """Endpoints disabled or enabled by other sinks (or the CLI), read about once a second."""
        if self._disabled_read.tick():
            self.disabled.step()

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.idle_poll_s)

    async def _drain(self) -> None:
        for consumer in (self.results, self.retries):
            assignment = consumer.assignment()
            if assignment:
                consumer.pause(assignment)
        if self._tasks and self._fatal is None:
            await asyncio.wait(list(self._tasks), timeout=self.settings.drain_timeout_s)
        for task in list(self._tasks):
            task.cancel()
        self.producer.flush(30)
        if self._fatal is None:
            self.committer.commit(sync=True)

    def _fail(self, reason: str) -> None:
        log.error("sink cannot go on: %s", reason)
        self._fatal = reason
        self._wake.set()

    # ---- intake ----------------------------------------------------------------------------

    def _room(self) -> int:
        return max(0, min(self.settings.batch_size, self.settings.max_pending - self._pending))

    def _poll_results(self) -> int:
        messages = self.results.consume(max(1, self._room()), 0)
        for msg in messages:
            if is_record(msg, log):
                self._fan_out(msg)
        return len(messages)

    def _fan_out(self, msg: MessageLike) -> None:
        tp, offset = position(msg)
        epoch = self.tracker.add(tp, offset)
        if tp[0] == self.events_topic:
            self._fan_out_event(msg, tp, offset, epoch)
            return
        try:
            result = decode_result(msg.value())
        except ContractError as exc:
            # Not ours to repair: a foreign or newer record on the results topic. Say so and move on.
            self.stats["invalid"] += 1
            log.error("undecodable record on results topic at %s@%d: %s", tp, offset, exc)
            self.tracker.done(tp, offset, epoch)
            return
        targets: list[Target] = []
        if result.webhook_url is not None:
            targets.append((result.webhook_url, None))
        for sub in self.subscriptions.values():
            if sub.matches(result.tenant, result.model, result.status):
                targets.append((sub.url, sub.id))
        self._deliver(msg, result.job_id, targets, (tp, offset, epoch))

    def _fan_out_event(self, msg: MessageLike, tp: TP, offset: int, epoch: int) -> None:
        """A batch event (OpenAI's shape) to the subscriptions of its tenant that want its type;
        its id is the webhook-id."""
        try:
            event = orjson.loads(msg.value() or b"")
            event_id, kind = str(event["id"]), str(event["type"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.stats["invalid"] += 1
            log.error("undecodable record on the events topic at %s@%d", tp, offset)
            self.tracker.done(tp, offset, epoch)
            return
        tenant = header(msg.headers(), "sluice.tenant")
        targets: list[Target] = [
            (s.url, s.id) for s in self.subscriptions.values() if s.wants_event(tenant, kind)
        ]
        self._deliver(msg, event_id, targets, (tp, offset, epoch))

    def _deliver(
        self,
        msg: MessageLike,
        webhook_id: str,
        targets: list[tuple[str, str | None]],
        at: tuple[TP, int, int],
    ) -> None:
        """One delivery of the record per target; the record settles once they all have."""
        tp, offset, epoch = at
        if not targets:
            self.stats["skipped"] += 1
            self.metrics.skipped.inc()
            self.tracker.done(tp, offset, epoch)
            return
        _, ts_ms = msg.timestamp()
        produced = ts_ms / 1000 if ts_ms > 0 else time.time()
        body = (msg.value() or b"").decode()
        traceparent = ensure_traceparent(header(msg.headers(), TRACEPARENT))
        source = _Source(tp, offset, epoch, len(targets))
        for url, sub_id in targets:
            delivery = Delivery(job_id=webhook_id, url=url, subscription=sub_id, first_at=produced, body=body)
            self._dispatch(delivery, source, traceparent)

    def _poll_retries(self) -> int:
        messages = self.retries.consume(max(1, self._room()), 0)
        held: set[TP] = set()
        now = time.time()
        for msg in messages:
            if not is_record(msg, log):
                continue
            tp, offset = position(msg)
            if tp in held:
                continue
            try:
                delivery = decode_delivery(msg.value())
            except ContractError as exc:
                self.stats["invalid"] += 1
                log.error("undecodable record on retry topic at %s@%d: %s", tp, offset, exc)
                self.tracker.done(tp, offset, self.tracker.add(tp, offset))
                continue
            kind, ts_ms = msg.timestamp()
            produced = ts_ms / 1000 if kind != TIMESTAMP_NOT_AVAILABLE else 0.0
            step, wait = intake(delivery.due_at, produced, self._tier_of.get(tp[0], 0.0), now)
            if step is Intake.HOLD:  # not released: hold the partition at this record until it is
                held.add(tp)
                part = TopicPartition(tp[0], tp[1], offset)
                self.retries.pause([part])
                self.retries.seek(part)
                self._due[tp] = time.monotonic() + wait
                continue
            source = _Source(tp, offset, self.tracker.add(tp, offset), 1)
            traceparent = ensure_traceparent(header(msg.headers(), TRACEPARENT))
            if step is Intake.HOP:
                self._produce(self.plan.tier_topic(self.plan.tier_for(wait)), delivery, traceparent, source)
            else:
                self._dispatch(delivery, source, traceparent)
        return len(messages)

    def _release_due(self) -> None:
        now = time.monotonic()
        ready = [tp for tp, at in self._due.items() if at <= now]
        for tp in ready:
            del self._due[tp]
            if not self._held:
                self.retries.resume([TopicPartition(tp[0], tp[1])])

    def _backpressure(self) -> None:
        full = self._pending >= self.settings.max_pending
        if full == self._held:
            return
        self._held = full
        for consumer in (self.results, self.retries):
            parts = [p for p in consumer.assignment() if (p.topic, p.partition) not in self._due]
            if parts:
                (consumer.pause if full else consumer.resume)(parts)

    # ---- delivery --------------------------------------------------------------------------

    def _dispatch(self, delivery: Delivery, source: _Source, traceparent: str) -> None:
        """Queue the delivery at its endpoint, or settle it some other way (dead-letter)."""
        why = self.disabled.get(delivery.url)
        if why is not None:
            self._dead(delivery, source, traceparent, "endpoint_disabled", why)
            return
        if delivery.subscription is not None and delivery.subscription not in self.subscriptions:
            self._dead(delivery, source, traceparent, "unknown_subscription", delivery.subscription)
            return
        try:
            self.policy.check_url(delivery.url)
        except ForbiddenUrlError as exc:
            self._dead(delivery, source, traceparent, "forbidden_url", str(exc))
            return
        endpoint = self.endpoints.get(delivery.url)
        endpoint.line.append((time.monotonic(), _Pending(delivery, source, traceparent)))
        self._pending += 1
        self._pump(endpoint)

    def _pump(self, endpoint: Endpoint[_Pending]) -> None:
        """Start requests from the endpoint's line while it has free connections."""
        while endpoint.line and endpoint.active < endpoint.concurrency:
            item = endpoint.line[0][1]
            why = self.disabled.get(item.delivery.url)
            if why is not None:  # answered 410 while this one waited
                endpoint.line.popleft()
                self._pending -= 1
                self._dead(item.delivery, item.source, item.traceparent, "endpoint_disabled", why)
                continue
            if not endpoint.breaker.allow():
                wait = max(endpoint.breaker.remaining_s(), self.plan.tiers[0])
                self._move_out(endpoint, wait, "circuit_open")
                return
            endpoint.line.popleft()
            endpoint.active += 1
            task = asyncio.create_task(self._attempt(item, endpoint))
            self._tasks[task] = (item, endpoint)
            task.add_done_callback(self._on_task_done)
        self.metrics.in_flight.set(self._pending)

    def _move_out(self, endpoint: Endpoint[_Pending], wait: float, reason: str) -> None:
        """Hand the endpoint's whole line to a retry tier (no attempt is used up)."""
        while endpoint.line:
            _, item = endpoint.line.popleft()
            self._pending -= 1
            self._defer(item.delivery, item.source, item.traceparent, wait, reason)

    def _sweep(self) -> None:
        """Move out the line of any endpoint whose oldest delivery waited longer than allowed: a
        slow receiver then holds neither memory nor the other receivers' turn."""
        now = time.monotonic()
        for endpoint in self.endpoints.waiting():
            if endpoint.oldest_wait_s(now) > self.settings.endpoint_max_wait_s:
                self._move_out(endpoint, self.plan.tiers[0], "endpoint_busy")

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        _, endpoint = self._tasks.pop(task)
        endpoint.active -= 1
        self._pending -= 1
        if task.cancelled():
            endpoint.breaker.abandon()
        elif task.exception() is not None:
            self._fail(f"delivery task crashed: {task.exception()!r}")
        else:
            self._pump(endpoint)
        self._wake.set()

    async def _attempt(self, item: _Pending, endpoint: Endpoint[_Pending]) -> None:
        delivery, source, traceparent = item.delivery, item.source, item.traceparent
        child = child_traceparent(traceparent)
        body = delivery.body.encode()
        keys = self.sub_keys[delivery.subscription] if delivery.subscription else self.keys
        headers = signature_headers(keys, delivery.job_id, body)
        headers.update({"content-type": "application/json", TRACEPARENT: child})
        outcome = await self.poster.post(delivery.url, body, headers)
        now = time.time()
        self._attempts(attempt_class(outcome)).inc()
        verdict, healthy = judge(outcome)
        if healthy is None:  # no request was made: if it was the probe, another may go
            endpoint.breaker.abandon()
        elif healthy:
            endpoint.breaker.success()
        else:
            endpoint.breaker.failure()
        if verdict is Verdict.DELIVERED:
            self.stats["delivered"] += 1
            self._delivered.inc()
            self.metrics.latency.observe(max(0.0, now - delivery.first_at))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("webhook delivered", extra={"job_id": delivery.job_id, "traceparent": child})
            self._settle(source)
            return
        # Only a delivery that goes on (retry tier, DLQ) carries its history.
        delivery.history.append(
            Attempt(
                attempt=delivery.attempt, at=now, status=outcome.status, error=outcome.error, ms=outcome.ms
            )
        )
        extra = {
            "job_id": delivery.job_id,
            "traceparent": child,
            "url": delivery.url,
            "attempt": delivery.attempt,
        }
        if verdict is Verdict.FORBIDDEN:
            self._dead(delivery, source, traceparent, "forbidden_url", outcome.error or "")
            return
        if verdict is Verdict.GONE:
            self.disabled.disable(delivery.url, f"answered 410 Gone at {now:.0f}")
            log.warning("endpoint answered 410 Gone; disabled", extra=extra)
            self._dead(delivery, source, traceparent, "endpoint_gone", "HTTP 410")
            return
        self._retry(delivery, source, traceparent, outcome, extra)

    def _retry(
        self, delivery: Delivery, source: _Source, traceparent: str, outcome: Outcome, extra: dict[str, Any]
    ) -> None:
        what = f"HTTP {outcome.status}" if outcome.status is not None else (outcome.error or "error")
        wait = self.plan.wait_before(delivery.attempt + 1)
        if wait is None:
            self._dead(delivery, source, traceparent, "attempts_exhausted", what)
            return
        if outcome.status in (429, 503):
            asked = parse_retry_after(outcome.retry_after, time.time(), cap=self.plan.tiers[-1])
            wait = asked if asked is not None else wait
        log.info("webhook attempt failed (%s); next in %.1fs", what, wait, extra=extra)
        delivery.attempt += 1
        self.stats["retried"] += 1
        self._defer(delivery, source, traceparent, wait, "retry")

    def _defer(self, delivery: Delivery, source: _Source, traceparent: str, wait: float, reason: str) -> None:
        """Hand the delivery to the retry tier that covers `wait`; settled once Kafka has it."""
        delivery.due_at = time.time() + wait
        if reason != "retry":
            self.stats["deferred"] += 1
        self.metrics.deferred.labels(reason).inc()
        topic = self.plan.tier_topic(self.plan.tier_for(wait))
        self._produce(topic, delivery, traceparent, source)

    def _dead(self, delivery: Delivery, source: _Source, traceparent: str, reason: str, detail: str) -> None:
        """Dead-letter the delivery with its history: loud, counted, and replayable."""
        delivery.reason, delivery.detail = reason, detail[:2000]
        self.stats["dead"] += 1
        self.metrics.deliveries.labels("dead_lettered").inc()
        self.metrics.dead.labels(reason).inc()
        log.error(
            "webhook delivery dead-lettered: %s (%s)",
            reason,
            detail,
            extra={"job_id": delivery.job_id, "url": delivery.url, "attempts": len(delivery.history)},
        )
        self._produce(self.plan.dlq_topic, delivery, traceparent, source)

    def _produce(self, topic: str, delivery: Delivery, traceparent: str, source: _Source) -> None:
        def stored(err: KafkaError | None, _msg: object) -> None:
            if err is None:
                self._settle(source)
            else:  # not settled: the source is redelivered after the restart
                self._fail(f"delivery of job {delivery.job_id} not stored in {topic}: {err}")

        headers = [(TRACEPARENT, traceparent.encode())]
        produce(self.producer, topic, delivery.encode(), delivery.job_id.encode(), headers, stored)

    def _settle(self, source: _Source) -> None:
        source.remaining -= 1
        if source.remaining == 0:
            self.tracker.done(source.tp, source.offset, source.epoch)

    # ---- rebalance callbacks (run inside consume()) ----------------------------------------

    def _on_assign(self, consumer: ConsumerLike, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.tracker.assign((p.topic, p.partition))
        consumer.incremental_assign(partitions)
        if self._held:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: ConsumerLike, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.producer.flush(10)
        # Not from close(), after the drain has committed: a commit from that callback never
        # returns under KIP-848's group protocol (see the worker's _on_revoke).
        if not self._closing:
            self.committer.commit(sync=True, tps=tps)
        self._forget(tps)
        consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: ConsumerLike, partitions: list[TopicPartition]) -> None:
        self._forget([(p.topic, p.partition) for p in partitions])
        consumer.incremental_unassign(partitions)

    def _forget(self, tps: list[TP]) -> None:
        gone = set(tps)
        for tp in tps:
            self.tracker.revoke(tp)
            self._due.pop(tp, None)
        for endpoint in self.endpoints.waiting():
            kept = [(t, item) for t, item in endpoint.line if item.source.tp not in gone]
            self._pending -= len(endpoint.line) - len(kept)
            endpoint.line.clear()
            endpoint.line.extend(kept)
        for task, (item, _) in list(self._tasks.items()):
            if item.source.tp in gone:
                task.cancel()


def create_sink(settings: SinkSettings, poster: Poster | None = None) -> Sink:
    """Build a Sink with real Kafka clients (its topics ensured); `poster` can be injected."""
    ensure_topics(settings, delivery_specs(settings, settings.retry_schedule))
    group_conf = {
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
    }
    results = Consumer(consumer_config(settings, settings.group_id, **group_conf))
    # A group of its own: balanced on its own, a sink never ends up with only retry partitions.
    retries = Consumer(consumer_config(settings, f"{settings.group_id}.retry", **group_conf))
    producer = Producer(producer_config(settings))
    disabled = DisabledEndpoints(disabled_topic(settings), endpoints_reader(settings), producer)
    metrics = SinkMetrics()
    if settings.metrics_port is not None:
        start_metrics_server(settings.metrics_port, metrics.registry)
    poster = poster or AiohttpPoster(settings.url_policy(), settings.timeout_s, settings.endpoint_concurrency)
    return Sink(settings, results, retries, producer, poster, metrics, disabled)


def run_sink(settings: SinkSettings) -> int:
    """Run the sink until SIGTERM/SIGINT."""

    async def main() -> int:
        sink = create_sink(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sink.stop)
        return await sink.run()

    return run_loop(main())
