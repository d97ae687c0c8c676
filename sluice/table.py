"""A compacted topic mirrored in memory: key -> decoded value, read to its end at start and followed
while running, written through to Kafka. What several services keep this way: the sink's disabled
endpoints, the gateway's API keys.

Every replica reads the whole topic (one partition, assigned, no group), so all of them agree once
they have read the same records; a tombstone (null value) removes a key for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sluice.clients import ProducerLike, ReaderLike
from sluice.kafka import is_record, produce, retrying

__all__ = ["Table"]

log = logging.getLogger("sluice.table")

V = TypeVar("V")


class Table(Generic[V]):
    """The records of a one-partition compacted topic by key; `consumer` None keeps them in memory
    only (tests), `producer` None makes it read-only."""

    def __init__(
        self,
        topic: str,
        decode: Callable[[bytes], V],
        consumer: ReaderLike | None,
        producer: ProducerLike | None,
    ) -> None:
        self.topic = topic
        self._decode = decode
        self._consumer = consumer
        self._producer = producer
        self._rows: dict[str, V] = {}
        # Keys written here and not yet read back: until the topic brings our own record, older
        # records of the key (still on their way) must not replace what we wrote.
        self._writing: dict[str, bytes | None] = {}
        self._next = 0  # offset of the next record to read

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def get(self, key: str) -> V | None:
        return self._rows.get(key)

    def items(self) -> Iterator[tuple[str, V]]:
        return iter(list(self._rows.items()))

    def start(self, timeout_s: float = 30.0, creator: str = "sluice topics create") -> None:
        """Read the topic up to its end as of now; step() follows it from there."""
        if self._consumer is None:
            return
        # Right after the topic is created, brokers may not list it yet: ask again a while.
        retrying(self._check_topic, f"topic {self.topic!r} (`{creator}` creates it)", timeout_s)
        tp = TopicPartition(self.topic, 0)
        low, end = retrying(partial(self._consumer.get_watermark_offsets, tp, timeout=10), self.topic)
        self._next = low
        self._consumer.assign([TopicPartition(self.topic, 0, low)])
        deadline = time.monotonic() + timeout_s
        while self._next < end and time.monotonic() < deadline:
            self.step(timeout_s=0.1)
        if self._next < end:
            log.warning("%s not read to the end in %.0f s; going on", self.topic, timeout_s)

    def _check_topic(self) -> None:
        assert self._consumer is not None
        meta = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None or 0 not in meta.partitions:
            raise KafkaException(meta.error if meta is not None and meta.error else "not listed")

    def step(self, timeout_s: float = 0.0) -> list[tuple[str, V | None]]:
        """Apply what was written since the last step; returns the changes (None: deleted)."""
        changes: list[tuple[str, V | None]] = []
        if self._consumer is None:
            return changes
        for msg in self._consumer.consume(100, timeout_s):
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                self._next = max(self._next, msg.offset() or 0)  # the end, past any compacted gap
            if not is_record(msg, log):
                continue
            self._next = (msg.offset() or 0) + 1
            raw_key = msg.key()
            if raw_key is None:
                continue
            key = raw_key.decode("utf-8", "replace")
            value = msg.value()
            if key in self._writing:
                if self._writing[key] == value:
                    del self._writing[key]  # ours: from here on the topic is ahead of us
                continue
            if value is None:
                if self._rows.pop(key, None) is not None:
                    changes.append((key, None))
                continue
            self._rows[key] = decoded = self._decode(value)
            changes.append((key, decoded))
        return changes

    def put(self, key: str, value: V, encoded: bytes) -> None:
        """Set `key` here at once and, through the topic, in every replica."""
        self._rows[key] = value
        if self._producer is not None:
            self._writing[key] = encoded
            produce(self._producer, self.topic, encoded, key.encode())

    def delete(self, key: str) -> None:
        """Remove `key` here and, with a tombstone, in every replica."""
        self._rows.pop(key, None)
        if self._producer is not None:
            self._writing[key] = None
            produce(self._producer, self.topic, None, key.encode())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
