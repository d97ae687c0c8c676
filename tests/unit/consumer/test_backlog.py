from __future__ import annotations

from consumer.backlog import Backlog
from tests.unit.fakes import FakeMessage


def msg(topic: str, partition: int = 0, offset: int = 0) -> FakeMessage:
    return FakeMessage(topic, partition, offset, b"{}")


def test_without_a_high_topic_records_come_out_in_order() -> None:
    b = Backlog(["jobs"], capacity=10)
    for i in range(3):
        b.push(msg("jobs", offset=i), 1)
    assert [b.pop()[0].offset() for _ in range(3)] == [0, 1, 2]  # type: ignore[index]
    assert b.pop() is None


def test_normal_share_zero_starves_normal_only_while_high_waits() -> None:
    b = Backlog(["hi", "jobs"], capacity=10, high_topic="hi", normal_share=0.0)
    for i in range(3):
        b.push(msg("hi", offset=i), 1)
        b.push(msg("jobs", offset=i), 1)
    assert [b.pop()[0].topic() for _ in range(6)] == ["hi"] * 3 + ["jobs"] * 3  # type: ignore[index]


def test_pause_has_hysteresis_and_normal_pauses_while_high_waits() -> None:
    b = Backlog(["hi", "jobs"], capacity=4, low_water=0.5, high_topic="hi")
    for i in range(4):
        b.push(msg("jobs", offset=i), 1)
    assert b.topics_to_pause() == {"jobs"}
    b.pop()
    assert b.topics_to_pause() == {"jobs"}, "3 > low water 2: stay paused"
    b.pop()
    assert b.topics_to_pause() == set()
    b.push(msg("hi"), 1)
    assert b.topics_to_pause() == {"jobs"}, "high waits and normal already has jobs buffered"
    assert b.room() == 4 - 1 + 4 - 2


def test_drop_forgets_revoked_partitions() -> None:
    b = Backlog(["jobs"], capacity=10)
    b.push(msg("jobs", 0, 0), 1)
    b.push(msg("jobs", 1, 0), 1)
    assert b.drop({("jobs", 0)}) == 1
    assert len(b) == 1 and b.pop()[0].partition() == 1  # type: ignore[index]
