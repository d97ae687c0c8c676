"""Exactly-once bookkeeping (sluice.transactions) on the fake producer's transactions: which records
go into which transaction, and what an aborted transaction leaves behind."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from sluice.errors import KafkaOperationError
from sluice.offsets import OffsetTracker
from sluice.transactions import Transactions
from tests.unit.fakes import FakeConsumer, FakeProducer

T = "jobs"


def make() -> tuple[Transactions, FakeProducer, OffsetTracker]:
    producer = FakeProducer()
    tracker = OffsetTracker()
    txn = Transactions(producer, {T: FakeConsumer()}, tracker, interval_s=0.0)
    txn.start()
    return txn, producer, tracker


def record(n: int) -> tuple[str, bytes, bytes, list[Any]]:
    return ("results", f"k{n}".encode(), f"r{n}".encode(), [])


def one_finished_job() -> tuple[Transactions, FakeProducer]:
    """Partition 0 assigned, its offset 0 finished and held."""
    txn, producer, tracker = make()
    epoch = tracker.assign((T, 0))
    tracker.add((T, 0), 0)
    txn.produce((T, 0), 0, epoch, record(0))
    return txn, producer


def test_results_wait_for_every_earlier_job_of_their_partition() -> None:
    txn, producer, tracker = make()
    epoch = tracker.assign((T, 0))
    for offset in range(3):
        tracker.add((T, 0), offset)
    txn.produce((T, 0), 2, epoch, record(2))  # finished first, out of order
    txn.produce((T, 0), 1, epoch, record(1))
    txn.commit(sync=False)
    assert producer.committed == []  # offset 0 is still running: nothing may be committed
    txn.produce((T, 0), 0, epoch, record(0))
    txn.commit(sync=False)
    assert producer.committed == [([b"r2", b"r1", b"r0"], [(T, 0, 3)])]
    assert txn.held() == 0


def test_an_aborted_transaction_is_sent_again_whole() -> None:
    txn, producer = one_finished_job()
    producer.fail_next = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
    txn.commit(sync=False)
    assert producer.committed == [] and producer.aborts == 1 and txn.held() == 1
    txn.commit(sync=False)
    assert producer.committed == [([b"r0"], [(T, 0, 1)])]


def test_a_fenced_producer_stops_the_worker() -> None:
    txn, producer = one_finished_job()
    producer.fail_next = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    with pytest.raises(KafkaOperationError, match="transaction failed"):
        txn.commit(sync=False)


def test_results_of_a_revoked_partition_are_dropped() -> None:
    txn, producer, tracker = make()
    old = tracker.assign((T, 0))
    tracker.add((T, 0), 0)
    tracker.revoke((T, 0))
    txn.produce((T, 0), 0, old, record(0))  # finished after the revoke: its new owner answers
    tracker.assign((T, 0))
    txn.commit(sync=False)
    assert producer.committed == [] and txn.held() == 0


def test_the_first_commit_is_due_at_once_on_a_freshly_booted_machine() -> None:
    producer = FakeProducer()
    tracker = OffsetTracker()
    tp = (T, 0)
    epoch = tracker.assign(tp)
    tracker.add(tp, 0)
    # Monotonic time counts from boot: 5 s after boot, with an hour's interval, nothing was committed yet.
    txn = Transactions(producer, {T: FakeConsumer()}, tracker, interval_s=3600, clock=lambda: 5.0)
    txn.produce(tp, 0, epoch, (T, b"k", b"v", []))
    txn.maybe_commit()
    assert producer.committed == [([b"v"], [(T, 0, 1)])]


def test_a_transaction_blocks_the_worker_at_most_its_timeout_in_all() -> None:
    """Kafka answering every call with a retriable timeout (a broker that is not coming back): the
    whole transaction, every call and retry of it, ends after timeout_s, and the worker stops."""
    now = [0.0]
    given: list[tuple[str, float]] = []

    class Unanswered(FakeProducer):
        def send_offsets_to_transaction(
            self, positions: Any, group_metadata: Any, timeout: float = -1
        ) -> None:
            given.append(("send offsets", timeout))
            now[0] += min(timeout, 7.0)  # each call waits its timeout, up to librdkafka's own 7 s here
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))

    producer = Unanswered()
    tracker = OffsetTracker()
    txn = Transactions(
        producer,
        {T: FakeConsumer()},
        tracker,
        interval_s=0.0,
        timeout_s=60.0,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    epoch = tracker.assign((T, 0))
    tracker.add((T, 0), 0)
    txn.produce((T, 0), 0, epoch, record(0))
    with pytest.raises(KafkaOperationError, match="within 60 s"):
        txn.commit(sync=False)
    assert now[0] <= 60.0 and len(given) > 1  # retried, inside one deadline
    assert all(t <= 60.0 - 7.5 * i + 1e-9 for i, (_, t) in enumerate(given))  # each call gets what is left
    assert producer.committed == []
