"""Fakes of the confluent-kafka Consumer and Producer, for unit tests of the worker and sink loops.

They model only what the worker relies on: a queue of records per partition, rebalance callbacks
fired from consume(), pause/resume, commits recorded in order, and delivery callbacks fired when
the test says Kafka acknowledged (ack()) or refused (fail()) a produced record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, TopicPartition


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _key: bytes | None = None
    _headers: list[tuple[str, bytes]] = field(default_factory=list)
    _error: KafkaError | None = None
    _timestamp_ms: int = 1_700_000_000_000

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)


class FakeConsumer:
    """Fake consumer: records per partition, a scripted rebalance, and a commit log."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], list[FakeMessage]] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.assigned: list[tuple[str, int]] = []
        self.paused: set[tuple[str, int]] = set()
        self.commits: list[dict[tuple[str, int], int]] = []
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.pending_events: list[tuple[str, list[tuple[str, int]]]] = []
        self.closed = False

    def add(
        self,
        topic: str,
        partition: int,
        value: bytes | None,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        tp = (topic, partition)
        queue = self.records.setdefault(tp, [])
        message = FakeMessage(topic, partition, len(queue), value, key)
        if timestamp_ms is not None:
            message._timestamp_ms = timestamp_ms
        queue.append(message)

    def rebalance(self, kind: str, tps: list[tuple[str, int]]) -> None:
        """Schedule an assign/revoke/lost event, delivered inside the next consume()."""
        self.pending_events.append((kind, tps))

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        while self.pending_events:
            kind, tps = self.pending_events.pop(0)
            self.callbacks[kind](self, [TopicPartition(t, p) for t, p in tps])
        out: list[FakeMessage] = []
        for tp in self.assigned:
            if tp in self.paused:
                continue
            queue = self.records.get(tp, [])
            while self.positions.get(tp, 0) < len(queue) and len(out) < num_messages:
                out.append(queue[self.positions.get(tp, 0)])
                self.positions[tp] = self.positions.get(tp, 0) + 1
        return out

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.assigned.append((p.topic, p.partition))

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self.assigned = [tp for tp in self.assigned if tp not in gone]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(p.topic, p.partition) for p in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(p.topic, p.partition) for p in partitions}

    def seek(self, part: TopicPartition) -> None:
        self.positions[(part.topic, part.partition)] = part.offset

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append({(p.topic, p.partition): p.offset for p in offsets})

    def committed_offset(self, tp: tuple[str, int]) -> int | None:
        found = None
        for c in self.commits:
            found = c.get(tp, found)
        return found

    def close(self) -> None:
        self.closed = True


@dataclass
class Produced:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]] | None
    callback: Callable[[KafkaError | None, Any], None] | None


class FakeProducer:
    """Fake producer: keeps produced records; acks them when told (or at once if auto_ack)."""

    def __init__(self, auto_ack: bool = True) -> None:
        self.auto_ack = auto_ack
        self.unacked: list[Produced] = []
        self.acked: list[Produced] = []

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Any = None,
    ) -> None:
        self.unacked.append(Produced(topic, value, key, headers, on_delivery))

    def ack(self, n: int | None = None) -> None:
        batch = self.unacked if n is None else self.unacked[:n]
        self.unacked = self.unacked[len(batch) :]
        for record in batch:
            self.acked.append(record)
            if record.callback is not None:
                record.callback(None, None)

    def fail(self, error: KafkaError) -> None:
        batch, self.unacked = self.unacked, []
        for record in batch:
            if record.callback is not None:
                record.callback(error, None)

    def poll(self, timeout: float = 0) -> int:
        if self.auto_ack:
            self.ack()
        return 0

    def flush(self, timeout: float = 0) -> int:
        return self.poll()
