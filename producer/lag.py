"""Backpressure at submit: refuse new jobs while the workers are too far behind.

Lag = for each partition of the jobs topic, the high watermark minus the worker group's committed
offset (or the low watermark where the group has committed nothing). It is read from the broker
at most every `lag_check_interval_s` per topic, so a busy producer adds no per-job round trip.
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

__all__ = ["LagGuard"]

log = logging.getLogger("sluice.producer")


class LagGuard:
    """Raises BackpressureError when a topic's worker lag is above `settings.max_lag`."""

    def __init__(self, settings: ProducerSettings, client: OffsetReader | None = None) -> None:
        self.settings = settings
        self._lags: dict[str, tuple[float, int]] = {}  # topic -> (monotonic time read, lag)
        # Reads the workers' committed offsets; it never joins their group or commits.
        self._client = (
            client
            if client is not None
            else Consumer(
                reader_config(
                    settings, settings.worker_group_id, **{"client.id": f"lag-{uuid.uuid4().hex[:6]}"}
                )
            )
        )

    def check(self, topic: str) -> None:
        limit = self.settings.max_lag
        if limit is None:
            return
        lag = self.lag(topic)
        if lag > limit:
            raise BackpressureError(
                f"not accepting jobs: {topic!r} has {lag} jobs waiting for workers "
                f"(group {self.settings.worker_group_id!r}), above the limit of {limit}; retry later",
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
        meta = self._client.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        # The group coordinator may still be loading the group's offsets: ask again for a while.
        read = partial(self._client.committed, parts, timeout=10)
        committed = {p.partition: p.offset for p in retrying(read, f"offsets of {topic}", timeout_s=3)}
        total = 0
        for p in parts:
            low, high = self._client.get_watermark_offsets(p, timeout=10)
            done = committed.get(p.partition, -1)
            total += max(0, high - (done if done >= 0 else low))
        return total

    def close(self) -> None:
        self._client.close()
