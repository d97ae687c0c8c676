"""Fakes of the confluent-kafka Consumer and Producer, for unit tests of the worker and sink loops.

They model only what the worker relies on: a queue of records per partition, rebalance callbacks
fired from consume(), pause/resume, commits recorded in order, and delivery callbacks fired when
the test says Kafka acknowledged (ack()) or refused (fail()) a produced record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sluice.clients import DeliveryCallback, RebalanceCallback, WireHeaders


@dataclass
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _key: bytes | None = None
    _headers: WireHeaders = field(default_factory=list)
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

    def headers(self) -> WireHeaders:
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
        self.closing = False
        self.commits_in_close = 0  # a real one never returns from these on KIP-848's protocol

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

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        given = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self.callbacks = {kind: callback for kind, callback in given.items() if callback is not None}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
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

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = [(p.topic, p.partition) for p in partitions]
        for p in partitions:
            self.positions[(p.topic, p.partition)] = max(0, p.offset)

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.records.get((partition.topic, partition.partition), []))

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        raise NotImplementedError("FakeConsumer has no cluster metadata; subclass it where a test needs some")

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
        if self.closing:
            self.commits_in_close += 1
        self.commits.append({(p.topic, p.partition): p.offset for p in offsets})

    def committed_offset(self, tp: tuple[str, int]) -> int | None:
        found = None
        for c in self.commits:
            found = c.get(tp, found)
        return found

    def consumer_group_metadata(self) -> object:
        return ("group-metadata", id(self))

    def close(self) -> None:
        """As librdkafka's: every partition still assigned is revoked through the callback first."""
        self.closing = True
        if self.assigned and "revoke" in self.callbacks:
            self.callbacks["revoke"](self, [TopicPartition(t, p) for t, p in self.assigned])
        self.closed = True


@dataclass
class Produced:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: WireHeaders | None
    callback: DeliveryCallback | None


class FakeProducer:
    """Fake producer: keeps produced records; acks them when told (or at once if auto_ack)."""

    def __init__(self, auto_ack: bool = True) -> None:
        self.auto_ack = auto_ack
        self.unacked: list[Produced] = []
        self.acked: list[Produced] = []
        # Transactions: what each committed one held (record values, offsets sent with it).
        self.committed: list[tuple[list[bytes | None], list[tuple[str, int, int]]]] = []
        self.fail_next: KafkaError | None = None  # the next commit_transaction raises this
        self.inits = 0
        self.aborts = 0
        self._txn: tuple[list[bytes | None], list[tuple[str, int, int]]] | None = None
        # JobProducer polls from a thread of its own while the test produces.
        self._lock = threading.RLock()
        # Called with (topic, value, key) for every record produced: a test can feed them back.
        self.listeners: list[Callable[[str, bytes | None, bytes | None], None]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: WireHeaders | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        with self._lock:
            if self._txn is not None:
                self._txn[0].append(value)
                return
            self.unacked.append(Produced(topic, value, key, headers, on_delivery))
        for listen in self.listeners:
            listen(topic, value, key)

    def ack(self, n: int | None = None) -> None:
        """Kafka stored the first `n` unacknowledged records (all by default), each at the next
        offset of partition 0 of its topic."""
        with self._lock:
            batch = self.unacked if n is None else self.unacked[:n]
            self.unacked = self.unacked[len(batch) :]
            for record in batch:
                offset = sum(1 for r in self.acked if r.topic == record.topic)
                self.acked.append(record)
                if record.callback is not None:
                    message = FakeMessage(
                        record.topic, 0, offset, record.value, record.key, record.headers or []
                    )
                    record.callback(None, message)

    def fail(self, error: KafkaError) -> None:
        batch, self.unacked = self.unacked, []
        for record in batch:
            if record.callback is not None:
                record.callback(error, None)

    def poll(self, timeout: float = 0) -> int:
        if self.auto_ack and self.unacked:
            self.ack()
        elif timeout > 0:
            time.sleep(min(timeout, 0.01))  # a delivery thread polling a fake must not spin
        return 0

    def __len__(self) -> int:
        return len(self.unacked)

    def flush(self, timeout: float = 0) -> int:
        """Like Producer.flush: acknowledge what auto_ack allows; how many are left unacknowledged."""
        self.poll()
        return len(self.unacked)

    def init_transactions(self, timeout: float = -1) -> None:
        self.inits += 1

    def begin_transaction(self) -> None:
        self._txn = ([], [])

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float = -1
    ) -> None:
        assert self._txn is not None
        self._txn[1].extend((p.topic, p.partition, p.offset) for p in positions)

    def commit_transaction(self, timeout: float = -1) -> None:
        assert self._txn is not None
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise KafkaException(error)
        self.committed.append(self._txn)
        self._txn = None

    def abort_transaction(self, timeout: float = -1) -> None:
        self.aborts += 1
        self._txn = None
