"""Jobs polled from Kafka but not yet started on the engine, per topic, and the admission rule.

Polling and admission are decoupled: the worker keeps a backlog of up to `capacity` records per
topic, so when an engine slot frees up the next job is already in memory (pausing a partition
drops the client's prefetched records, and re-fetching after a resume would leave slots idle).

Priority rule. Jobs on the high-priority topic are started first. While both topics have jobs
waiting, every k-th start (k = round(1 / normal_share), default 10) goes to the normal topic, so
normal jobs keep at least 1/k of the starts and are never starved; normal_share = 0 disables that.

Pausing. A topic is paused while its backlog is full and resumed once it drains to the low-water
mark. The normal topic is also kept paused while high-priority jobs wait and normal jobs are
already buffered for their share.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

from sluice.clients import MessageLike
from sluice.offsets import TP

__all__ = ["Backlog"]

Entry = tuple[MessageLike, int]  # the record and the partition epoch it was polled in


class Backlog:
    """Per-topic queues of polled records (see module docstring). Not thread-safe."""

    def __init__(
        self,
        topics: Iterable[str],
        capacity: int,
        low_water: float = 0.5,
        high_topic: str | None = None,
        normal_share: float = 0.1,
    ) -> None:
        self.topics = list(topics)
        self.capacity = capacity
        self.low_water = low_water
        self.high_topic = high_topic if high_topic in self.topics else None
        self.normal = [t for t in self.topics if t != self.high_topic]
        self.every = math.inf if normal_share <= 0 else max(1, round(1 / normal_share))
        self._queues: dict[str, deque[Entry]] = {t: deque() for t in self.topics}
        self._full: set[str] = set()
        self._streak = 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def room(self, topic: str | None = None) -> int:
        """How many more records the backlog takes for `topic` (all topics when None)."""
        queues = [self._queues.get(topic, deque())] if topic else list(self._queues.values())
        return sum(max(0, self.capacity - len(q)) for q in queues)

    def push(self, msg: MessageLike, epoch: int) -> None:
        topic = msg.topic()
        assert topic is not None
        self._queues.setdefault(topic, deque()).append((msg, epoch))

    def pop(self) -> Entry | None:
        """The next record to start, by the priority rule; None when nothing waits."""
        high = self._queues[self.high_topic] if self.high_topic else None
        normal = None
        for topic in self.normal:
            if self._queues[topic]:
                normal = self._queues[topic]
                break
        if high and (normal is None or self._streak < self.every - 1):
            self._streak += 1
            return high.popleft()
        if normal:
            self._streak = 0
            return normal.popleft()
        return None

    def drop(self, tps: set[TP]) -> int:
        """Forget records of revoked partitions; returns how many were dropped."""
        dropped = 0
        for topic, queue in self._queues.items():
            kept = deque(e for e in queue if (topic, e[0].partition()) not in tps)
            dropped += len(queue) - len(kept)
            self._queues[topic] = kept
        return dropped

    def topics_to_pause(self) -> set[str]:
        """Topics whose partitions should be paused now (with hysteresis)."""
        for topic, queue in self._queues.items():
            if len(queue) >= self.capacity:
                self._full.add(topic)
            elif len(queue) <= self.capacity * self.low_water:
                self._full.discard(topic)
        paused = set(self._full)
        if self.high_topic and self._queues[self.high_topic]:
            paused |= {t for t in self.normal if self._queues[t]}
        return paused
