"""KIP-447 on the real broker, as Sluice's exactly-once workers use it: a member that is given a
partition while another member's transaction holds offsets for it must not start from the older
committed offset (it would read again jobs whose results that transaction commits)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from sluice.kafka import consumer_config, create_topics
from sluice.settings import KafkaSettings
from sluice.topics import TopicSpec


def test_a_new_member_waits_out_a_pending_transactions_offsets(bootstrap: str) -> None:
    topic, group = f"stable-{uuid.uuid4().hex[:8]}", f"stable-{uuid.uuid4().hex[:8]}"
    s = KafkaSettings(bootstrap_servers=bootstrap)
    create_topics(s, [TopicSpec(topic, 1, {"cleanup.policy": "delete"})])
    plain = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        plain.produce(topic, f"job-{i}".encode())
    assert plain.flush(10) == 0

    first = Consumer(consumer_config(s, group, **{"session.timeout.ms": 6000}))
    first.subscribe([topic])
    deadline = time.monotonic() + 30
    while not first.assignment() and time.monotonic() < deadline:
        first.poll(0.1)
    assert first.assignment(), "the first member was never assigned the partition"
    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"stable-{uuid.uuid4().hex}"})
    txn.init_transactions(30)
    txn.begin_transaction()
    txn.send_offsets_to_transaction([TopicPartition(topic, 0, 5)], first.consumer_group_metadata(), 30)
    first.close()  # leaves the group with the transaction still open, as a worker killed mid-commit

    second = Consumer(consumer_config(s, group, **{"session.timeout.ms": 6000}))
    second.subscribe([topic])
    early = [m.offset() for m in second.consume(10, 8.0) if not m.error()]
    txn.commit_transaction(30)
    later: list[int | None] = []
    deadline = time.monotonic() + 30
    while not later and time.monotonic() < deadline:
        later = [m.offset() for m in second.consume(10, 0.5) if m.error() is None]
    second.close()
    assert early == [], (
        f"read offsets {early} while the transaction was open: its offsets were not waited for"
    )
    assert later[:1] == [5], f"started at {later[:1]} after the commit, not at the committed 5"
