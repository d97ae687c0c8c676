"""`sluice dlq list|replay`: look into and replay both dead-letter topics.

- jobs: the job DLQ (`inference-dlq`) where workers put records they cannot decode or validate,
  with the original bytes and sluice.error.* headers. Replay re-produces the original record to
  the topic it came from (after the cause is fixed, e.g. a worker upgraded to a newer schema).
- deliveries: the delivery DLQ (`inference-deliveries.dlq`) where the sink puts webhook
  deliveries it gave up on, with their attempt history. Replay hands each back to the sink's
  first retry tier as a fresh delivery (attempt 1, history kept).

Both topics are audit logs: replay appends, it never deletes. Filters: job ids, endpoint URL,
time range of the dead-lettering (record timestamp).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import Consumer, Producer, TopicPartition

from results_sink.deliveries import decode_delivery
from results_sink.schedule import RetryPlan
from sluice.errors import ConfigError, ContractError, KafkaOperationError
from sluice.kafka import header, header_pairs, produce, producer_config, reader_config, retrying
from sluice.settings import KafkaSettings, SinkSettings

__all__ = ["DlqEntry", "DlqFilter", "list_dlq", "parse_filter", "replay_dlq"]

Kind = Literal["jobs", "deliveries"]


@dataclass(frozen=True)
class DlqFilter:
    """Which dead letters: any of `job_ids` (empty: all), `endpoint` (exact URL), time range."""

    job_ids: frozenset[str] = frozenset()
    endpoint: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def empty(self) -> bool:
        return not self.job_ids and self.endpoint is None and self.since is None and self.until is None

    def matches(self, entry: DlqEntry) -> bool:
        return (
            (not self.job_ids or entry.job_id in self.job_ids)
            and (self.endpoint is None or entry.endpoint == self.endpoint)
            and (self.since is None or entry.at >= self.since)
            and (self.until is None or entry.at <= self.until)
        )


@dataclass
class DlqEntry:
    kind: Kind
    partition: int
    offset: int
    at: datetime
    job_id: str | None
    reason: str
    detail: str
    endpoint: str | None = None
    attempts: int = 0
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind,
            "at": self.at.isoformat(timespec="seconds"),
            "job_id": self.job_id,
            "reason": self.reason,
            "detail": self.detail[:300],
            "position": f"{self.partition}:{self.offset}",
        }
        if self.kind == "deliveries":
            out.update(endpoint=self.endpoint, attempts=self.attempts)
        return out


def dlq_topic(settings: KafkaSettings, kind: Kind) -> str:
    if kind == "jobs":
        return settings.dlq_topic
    return f"{settings.deliveries_topic}.dlq"


def _records(settings: KafkaSettings, topic: str, timeout: float = 10.0) -> Iterator[object]:
    consumer = Consumer(reader_config(settings, f"sluice-dlq-reader-{uuid.uuid4().hex[:8]}"))
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise KafkaOperationError(f"topic {topic!r} not found")
        ends = {}
        for p in meta.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                # The end by the consumer's position: a partition written in transactions (an
                # exactly-once worker's dead letters) ends with a commit marker, never a record.
                for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
                continue
            deadline = time.monotonic() + timeout
            partition, offset = msg.partition() or 0, msg.offset() or 0
            yield msg
            if offset + 1 >= ends.get(partition, 0):
                ends.pop(partition, None)
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, part: TopicPartition, timeout: float) -> tuple[int, int]:
    # A topic the sink has just created may not have its partition leaders yet: ask again briefly.
    low, high = retrying(
        lambda: consumer.get_watermark_offsets(part, timeout=timeout), f"offsets of {part.topic}", 5.0
    )
    return int(low), int(high)


def list_dlq(settings: KafkaSettings, kind: Kind, flt: DlqFilter = DlqFilter()) -> list[DlqEntry]:
    """Every dead letter of `kind` that matches `flt`, oldest first per partition."""
    entries = []
    for msg in _records(settings, dlq_topic(settings, kind)):
        _, ts_ms = msg.timestamp()  # type: ignore[attr-defined]
        at = datetime.fromtimestamp(ts_ms / 1000, UTC)
        key, value, headers = msg.key(), msg.value(), msg.headers()  # type: ignore[attr-defined]
        entry = DlqEntry(kind, msg.partition(), msg.offset(), at, None, "", "", key=key, value=value)  # type: ignore[attr-defined]
        entry.headers = header_pairs(headers)
        if kind == "jobs":
            entry.job_id = key.decode("utf-8", "replace") if key else None
            entry.reason = header(headers, "sluice.error.code") or "unknown"
            entry.detail = header(headers, "sluice.error.message") or ""
        else:
            try:
                delivery = decode_delivery(value)
            except ContractError as exc:
                entry.reason, entry.detail = "undecodable", str(exc)
            else:
                entry.job_id, entry.endpoint = delivery.job_id, delivery.url
                entry.reason, entry.detail = delivery.reason or "unknown", delivery.detail or ""
                entry.attempts = len(delivery.history)
        if flt.matches(entry):
            entries.append(entry)
    return entries


def replay_dlq(settings: SinkSettings, kind: Kind, flt: DlqFilter, dry_run: bool = False) -> list[DlqEntry]:
    """Replay the matching dead letters (see the module docstring); returns what was replayed."""
    entries = [e for e in list_dlq(settings, kind, flt) if e.value is not None]
    if kind == "deliveries":
        entries = [e for e in entries if e.reason != "undecodable"]
    if dry_run or not entries:
        return entries
    producer = Producer(producer_config(settings))
    errors: list[str] = []

    def stored(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    source = dlq_topic(settings, kind)
    plan = RetryPlan.of(settings.retry_schedule, settings.deliveries_topic, settings.retry_jitter)
    for e in entries:
        headers: list[tuple[str, str | bytes | None]] = [
            ("sluice.replayed.from", f"{source}:{e.partition}:{e.offset}".encode())
        ]
        if kind == "jobs":
            topic = header(e.headers, "sluice.source.topic") or settings.jobs_topic
            headers += [(k, v) for k, v in e.headers if not k.startswith("sluice.")]
            produce(producer, topic, e.value, e.key, headers, stored)
        else:
            delivery = decode_delivery(e.value)
            delivery.attempt, delivery.due_at, delivery.reason, delivery.detail = 1, time.time(), None, None
            headers += [(k, v) for k, v in e.headers if k == "traceparent"]
            topic = plan.tier_topic(plan.tiers[0])
            produce(producer, topic, delivery.encode(), e.key, headers, stored)
    left = producer.flush(30)
    if errors or left:
        raise KafkaOperationError(f"replay incomplete: {left} unacknowledged, errors: {errors[:3]}")
    return entries


def parse_filter(
    job_ids: Sequence[str] | None, endpoint: str | None, since: str | None, until: str | None
) -> DlqFilter:
    def when(flag: str, text: str | None) -> datetime | None:
        if text is None:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"{flag}: expected an ISO time such as 2026-11-23T08:00, got {text!r}"
            ) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    return DlqFilter(frozenset(job_ids or ()), endpoint, when("--since", since), when("--until", until))
