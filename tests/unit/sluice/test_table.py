"""The in-memory mirror of a compacted topic."""

from __future__ import annotations

from sluice.table import Table
from tests.unit.fakes import FakeConsumer, FakeProducer


def test_older_records_on_their_way_never_replace_what_this_replica_wrote() -> None:
    consumer, producer = FakeConsumer(), FakeProducer()
    table: Table[bytes] = Table("t", bytes, consumer, producer)
    consumer.assign([])
    consumer.assigned = [("t", 0)]
    table.put("batch", b"in_progress", b"in_progress")
    table.put("batch", b"completed", b"completed")
    producer.flush()
    for record in producer.acked:  # the topic brings our two writes back, in order
        consumer.add("t", 0, record.value, record.key)
    table.step()
    assert table.get("batch") == b"completed"
    consumer.add("t", 0, b"from another writer", b"batch")
    table.step()
    assert table.get("batch") == b"from another writer"  # after ours, others' writes apply again
