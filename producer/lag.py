"""Backpressure at submit: refuse new jobs while the workers are too far behind.

Lag = for each partition of the jobs topic, the high watermark minus the committed offset of the
worker group that reads it (each pool's group, and `<group>.high` for a high topic: the normal
topic's group never commits there), or the low watermark where the group has committed nothing.
It is read from the broker at most every `lag_check_interval_s` per topic, so a busy producer adds
no per-job round trip.
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import partial

from confluent_kafka import Consumer, KafkaException, TopicPartition

from sluice.clients import OffsetReader
from sluice.errors import BackpressureError, KafkaOperationError
from sluice.kafka import reader_config, retrying
from sluice.settings import ProducerSettings
from sluice.topics import worker_group

__all__ = ["LagGuard"]

log = logging.getLogger("sluice.producer")


class LagGuard:
    """Raises BackpressureError when a topic's worker lag is above `settings.max_lag`."""

    def __init__(self, settings: ProducerSettings, client: OffsetReader | None = None) -> None:
        """`client` reads every group's offsets (tests); otherwise one reader per worker group."""
        self.settings = settings
        self._lags: dict[str, tuple[float, int]] = {}  # topic -> (monotonic time read, lag)
        self._given = client
        self._clients: dict[str, OffsetReader] = {}

    def _client_for(self, topic: str) -> OffsetReader:
        """A reader of the committed offsets of the group that consumes `topic` (each pool's, and
        the high topics' groups are their own); it never joins the group or commits."""
        if self._given is not None:
            return self._given
        group = worker_group(self.settings, self.settings.worker_group_id, topic)
        if group not in self._clients:
            client_id = {"client.id": f"lag-{uuid.uuid4().hex[:6]}"}
            self._clients[group] = Consumer(reader_config(self.settings, group, **client_id))
        return self._clients[group]

    def check(self, topic: str) -> None:
        limit = self.settings.max_lag
        if limit is None:
            return
        lag = self.lag(topic)
        if lag > limit:
            raise BackpressureError(
                f"not accepting jobs: {topic!r} has {lag} jobs waiting for workers "
                f"(group {worker_group(self.settings, self.settings.worker_group_id, topic)!r}), "
                f"above the limit of {limit}; retry later",
                lag=lag,
                limit=limit,
            )

    def lag(self, topic: str) -> int:
        cached = self._lags.get(topic)
        if cached is not None and time.monotonic() - cached[0] < self.settings.lag_check_interval_s:
            return cached[1]
        try:
            total = self._read(topic)
        except (KafkaException, KafkaOperationError) as exc:
            # Cannot tell (e.g. the group coordinator is loading): accept rather than refuse
            # every job; the next check reads again.
            log.warning("could not read the consumer lag of %s: %s", topic, exc)
            return cached[1] if cached is not None else 0
        self._lags[topic] = (time.monotonic(), total)
        return total

    def _read(self, topic: str) -> int:
        client = self._client_for(topic)
        meta = client.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        # The group coordinator may still be loading the group's offsets: ask again for a while.
        read = partial(client.committed, parts, timeout=10)
        committed = {p.partition: p.offset for p in retrying(read, f"offsets of {topic}", timeout_s=3)}
        total = 0
        for p in parts:
            low, high = client.get_watermark_offsets(p, timeout=10)
            done = committed.get(p.partition, -1)
            total += max(0, high - (done if done >= 0 else low))
        return total

    def close(self) -> None:
        for client in [*self._clients.values(), *([self._given] if self._given is not None else [])]:
            client.close()
