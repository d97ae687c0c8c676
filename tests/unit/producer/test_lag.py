"""LagGuard on a fake offsets reader: lag per topic, the cache, the limit, and a broker that cannot
tell (it accepts rather than refuse every job)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from producer.lag import LagGuard
from sluice.errors import BackpressureError
from sluice.settings import ProducerSettings


class _Listing:
    def __init__(self, topic: str, partitions: int) -> None:
        self.topics = {topic: type("Meta", (), {"partitions": dict.fromkeys(range(partitions))})()}


class FakeOffsets:
    """Partitions with (low, high) watermarks and the group's committed offsets (-1001: none)."""

    def __init__(self, ends: dict[int, tuple[int, int]], committed: dict[int, int]) -> None:
        self.ends, self.committed_at = ends, committed
        self.reads = 0
        self.failing = 0  # the next reads of committed offsets fail (a coordinator loading)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return _Listing(str(topic), len(self.ends))

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        self.reads += 1
        if self.failing:
            self.failing -= 1
            raise KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS))
        return [
            TopicPartition(p.topic, p.partition, self.committed_at.get(p.partition, -1001))
            for p in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return self.ends[partition.partition]

    def close(self) -> None:
        pass


def guard(offsets: FakeOffsets, max_lag: int | None = 10, interval: float = 3600) -> LagGuard:
    settings = ProducerSettings(max_lag=max_lag, lag_check_interval_s=interval)
    return LagGuard(settings, client=offsets)


def test_lag_counts_from_the_committed_offset_or_the_start_where_none_is() -> None:
    offsets = FakeOffsets({0: (0, 10), 1: (5, 9)}, committed={0: 7})
    assert guard(offsets).lag("jobs") == 3 + 4


def test_lag_is_read_at_most_once_per_interval() -> None:
    offsets = FakeOffsets({0: (0, 10)}, committed={0: 10})
    g = guard(offsets)
    g.lag("jobs")
    offsets.ends[0] = (0, 50)
    assert g.lag("jobs") == 0 and offsets.reads == 1


def test_above_the_limit_submitting_is_refused_with_the_figures() -> None:
    g = guard(FakeOffsets({0: (0, 100)}, committed={0: 50}), max_lag=10)
    with pytest.raises(BackpressureError) as caught:
        g.check("jobs")
    assert (caught.value.lag, caught.value.limit) == (50, 10) and "'jobs' has 50 jobs waiting" in str(
        caught.value
    )
    guard(FakeOffsets({0: (0, 100)}, committed={0: 95}), max_lag=10).check("jobs")  # within the limit


def test_a_loading_coordinator_is_asked_again() -> None:
    offsets = FakeOffsets({0: (0, 10)}, committed={0: 4})
    offsets.failing = 2
    assert guard(offsets).lag("jobs") == 6 and offsets.reads == 3


def test_when_the_lag_cannot_be_read_jobs_are_accepted() -> None:
    offsets = FakeOffsets({0: (0, 10)}, committed={0: 0})
    offsets.failing = 10**6
    g = guard(offsets, max_lag=1)
    g.check("jobs")  # cannot tell: accept rather than refuse every job
