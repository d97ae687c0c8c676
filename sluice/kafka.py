"""Kafka plumbing shared by the services: client configs, topic admin, headers, error wrapping."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from sluice.clients import ConsumerLike, DeliveryCallback, MessageLike, ProducerLike, WireHeaders
from sluice.errors import ConfigError, KafkaOperationError
from sluice.settings import KafkaSettings
from sluice.topics import TopicSpec, pipeline_specs

__all__ = [
    "Headers",
    "TopicReport",
    "commit",
    "consumer_config",
    "create_topics",
    "header",
    "is_record",
    "position",
    "produce",
    "producer_config",
    "reader_config",
    "retrying",
    "set_group_session",
]

log = logging.getLogger("sluice.kafka")

Headers = list[tuple[str, bytes]]
T = TypeVar("T")


def producer_config(settings: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """An idempotent, acks=all producer: a result acknowledged is a result stored."""
    conf = settings.client_config()
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": settings.compression_type,
            "linger.ms": settings.linger_ms,
        }
    )
    conf.update(extra)
    return conf


# What a classic group member sets and a KIP-848 one may not (librdkafka refuses them there: the
# broker assigns partitions and owns the session).
_CLASSIC_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms")


def consumer_config(settings: KafkaSettings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A group member that commits by hand and stores no offsets on its own, on the settings' group
    protocol (incremental either way: cooperative-sticky or KIP-848)."""
    conf = settings.client_config()
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            # librdkafka's default, stated because exactly-once relies on it: a read_committed
            # member's offset fetch waits out another member's open transaction (KIP-447).
            "isolation.level": "read_committed",
        }
    )
    conf.update(extra)
    if settings.group_protocol == "consumer":
        for key in _CLASSIC_ONLY:
            conf.pop(key, None)
        conf["group.protocol"] = "consumer"
    return conf


def set_group_session(settings: KafkaSettings, group: str, session_ms: int, heartbeat_ms: int) -> None:
    """A consumer-protocol group's session timeout and heartbeat (KIP-848: the broker's, per group;
    within group.consumer.min/max.session.timeout.ms and .heartbeat.interval.ms)."""
    entries = [
        ConfigEntry(name, str(value), incremental_operation=AlterConfigOpType.SET)
        for name, value in (
            ("consumer.session.timeout.ms", session_ms),
            ("consumer.heartbeat.interval.ms", heartbeat_ms),
        )
    ]
    admin = AdminClient(settings.client_config())
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def reader_config(settings: KafkaSettings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A consumer given partitions by assign() (or one that only reads a group's offsets): it never
    joins its group, never commits, and reports each partition's end (so a reader knows when it
    has read everything)."""
    conf = settings.client_config()
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            # librdkafka's default, stated because the worker's idempotency view relies on it:
            # a result it holds is a committed one.
            "isolation.level": "read_committed",
        }
    )
    conf.update(extra)
    return conf


def produce(
    producer: ProducerLike,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    headers: Sequence[tuple[str, str | bytes | None]] = (),
    on_delivery: DeliveryCallback | None = None,
) -> None:
    """Produce one record, waiting while the client's local queue is full: polling serves the
    delivery reports that make room. Every service produces through here."""
    wire: WireHeaders = list(headers)
    while True:
        try:
            if on_delivery is None:
                producer.produce(topic, value, key, headers=wire)
            else:
                producer.produce(topic, value, key, headers=wire, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


RawHeaders = Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]] | None


def header(headers: RawHeaders, name: str) -> str | None:
    """The last value of header `name`, decoded, or None."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: str | bytes | None = None
    for key, value in pairs:
        if key == name and value is not None:
            found = value
    if isinstance(found, bytes):
        return found.decode("utf-8", "replace")
    return found


def header_pairs(headers: RawHeaders) -> list[tuple[str, bytes]]:
    """Headers as (name, bytes) pairs, dropping null values."""
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs if v is not None]


def is_record(msg: MessageLike, log: logging.Logger) -> bool:
    """True for a real record from consume(); an error event is logged (end-of-partition quietly)."""
    err = msg.error()
    if err is None:
        return True
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consume error: %s", err)
    return False


def position(msg: MessageLike) -> tuple[tuple[str, int], int]:
    """(topic, partition), offset of a consumed message (never None for a real record)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return (topic, partition), offset


def retrying(call: Callable[[], T], what: str, timeout_s: float = 30.0) -> T:
    """`call()`, asked again while Kafka answers with an error for up to `timeout_s` seconds.

    For one-off metadata reads (topic metadata, watermarks) at start-up: while a broker restarts,
    or right after a topic is created, they fail with transport or not-leader errors for a few
    seconds, and a process that gave up then would exit for nothing (seen in the chaos suite).
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            return call()
        except KafkaException as exc:
            if time.monotonic() + delay > deadline:
                raise KafkaOperationError(f"{what}: {exc}") from exc
            log.info("%s: %s; asking again", what, exc)
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


def commit(consumer: ConsumerLike, offsets: Mapping[tuple[str, int], int], sync: bool) -> None:
    """Commit explicit offsets (the next offset to read, per partition)."""
    parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
    if sync:
        consumer.commit(offsets=parts, asynchronous=False)
    else:
        consumer.commit(offsets=parts, asynchronous=True)


@dataclass(frozen=True)
class TopicReport:
    """What `create_topics` found or did for one topic."""

    name: str
    status: str  # "created" | "exists" | "mismatch"
    detail: str = ""


def create_topics(
    settings: KafkaSettings, specs: Iterable[TopicSpec] | None = None, timeout: float = 30.0
) -> list[TopicReport]:
    """Create missing topics; check existing ones and report any whose configuration differs."""
    specs = list(specs if specs is not None else pipeline_specs(settings))
    admin = AdminClient(settings.client_config())
    existing = admin.list_topics(timeout=timeout).topics
    reports: dict[str, TopicReport] = {}
    new = [
        NewTopic(s.name, s.partitions, settings.replication_factor, config=dict(s.config))
        for s in specs
        if s.name not in existing
    ]
    for name, future in (admin.create_topics(new, operation_timeout=timeout) if new else {}).items():
        try:
            future.result(timeout)
            reports[name] = TopicReport(name, "created")
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaOperationError(f"creating topic {name!r} failed: {exc}", exc.args[0]) from exc
    for spec in specs:
        if spec.name not in reports:
            reports[spec.name] = _compare(admin, spec, timeout)
    return [reports[s.name] for s in specs]


def _compare(admin: AdminClient, spec: TopicSpec, timeout: float) -> TopicReport:
    meta = admin.list_topics(topic=spec.name, timeout=timeout).topics[spec.name]
    differences = []
    if len(meta.partitions) != spec.partitions:
        differences.append(f"partitions={len(meta.partitions)} (wanted {spec.partitions})")
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    actual = admin.describe_configs([resource])[resource].result(timeout)
    for key, wanted in spec.config.items():
        have = actual[key].value if key in actual else None
        if have != wanted:
            differences.append(f"{key}={have} (wanted {wanted})")
    if differences:
        return TopicReport(spec.name, "mismatch", ", ".join(differences))
    return TopicReport(spec.name, "exists")


def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec] | None = None) -> list[TopicReport]:
    """create_topics, but a mismatch is an error: services refuse to run on a misconfigured topic."""
    reports = create_topics(settings, specs)
    bad = [r for r in reports if r.status == "mismatch"]
    if bad:
        raise ConfigError("; ".join(f"topic {r.name!r} exists with {r.detail}" for r in bad))
    return reports
