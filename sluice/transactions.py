"""Exactly-once mode: a worker's results and the offsets it consumed, in one Kafka transaction.

In this mode a finished job's result is not produced at once. It is held until every earlier job
of its partition has finished too, then produced inside a transaction that also commits the
partition's consumed offset past it (send_offsets_to_transaction, KIP-447 fencing through the
consumer group's metadata). A transaction commits both or neither, so a read_committed consumer
sees each job's result exactly once even across kill -9: after a crash the jobs whose offsets were
not committed run again, and the results an aborted or unfinished transaction wrote stay invisible.

Holding results until their partition's prefix is done is what makes it exact: a result committed
ahead of its offset would be written again by whoever re-runs the job. The price is latency (a
slow job holds back the later results of its partition) and a synchronous commit round trip per
interval; BENCHMARKS.md has the throughput cost.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sluice.clients import ConsumerLike, TransactionalProducer
from sluice.clock import Every
from sluice.errors import KafkaOperationError
from sluice.kafka import produce
from sluice.offsets import TP, OffsetTracker

__all__ = ["Record", "Transactions"]

log = logging.getLogger("sluice.transactions")

Record = tuple[str, bytes | None, bytes | None, list[Any]]  # topic, key, value, headers


class Transactions:
    """Holds records per source offset and commits them with the offsets, transactionally.

    Same commit interface as sluice.commits.Committer (maybe_commit, commit), so the worker's
    loop, drain and revoke paths are the same in both modes.
    """

    def __init__(
        self,
        producer: TransactionalProducer,
        consumers: Mapping[str, ConsumerLike],
        tracker: OffsetTracker,
        interval_s: float,
        timeout_s: float = 60.0,
        on_commit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.producer = producer
        self.consumers = consumers
        self.tracker = tracker
        # The most one transaction (or init, or abort) may block the worker's loop, retries
        # included: well under max.poll.interval.ms (300 s), or a stuck call would hold the
        # partitions unworked until the group evicts the worker.
        self.timeout_s = timeout_s
        self.on_commit = on_commit
        self._clock, self._sleep = clock, sleep
        self._held: dict[TP, list[tuple[int, Record]]] = defaultdict(list)
        self._every = Every(interval_s, clock)

    def start(self) -> None:
        """Fence any earlier producer with this transactional.id and abort its open transaction."""
        self._call(self.producer.init_transactions, "init", self._clock() + self.timeout_s)

    def produce(self, tp: TP, offset: int, epoch: int, record: Record) -> None:
        """Hold `record` (the answer to `tp`@`offset`) for the transaction that commits past it."""
        if self.tracker.done(tp, offset, epoch):  # else revoked meanwhile: the new owner answers it
            self._held[tp].append((offset, record))

    def forget(self, tps: list[TP]) -> None:
        """Drop what is held for partitions this worker no longer owns."""
        for tp in tps:
            self._held.pop(tp, None)

    def held(self) -> int:
        return sum(len(v) for v in self._held.values())

    def maybe_commit(self) -> None:
        if self._every.due():
            self.commit(sync=False)

    def commit(self, sync: bool, tps: list[TP] | None = None) -> None:
        """One transaction: the held records below each partition's committable offset, and those
        offsets. Raises KafkaOperationError when the producer cannot go on (fenced: another
        worker owns these partitions now); the worker then exits."""
        del sync  # a transaction commit is always synchronous
        self._every.done()
        offsets = self.tracker.committable(tps)
        if not offsets:
            return
        records = [rec for tp, nxt in offsets.items() for off, rec in self._held.get(tp, []) if off < nxt]
        try:
            self._transaction(records, offsets)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.txn_requires_abort():
                # Nothing of it is visible; the held records go out again in the next transaction.
                log.warning("transaction aborted, to be retried: %s", error)
                self._call(self.producer.abort_transaction, "abort", self._clock() + self.timeout_s)
                return
            raise KafkaOperationError(f"transaction failed: {error}") from exc
        for tp, nxt in offsets.items():
            kept = [(off, rec) for off, rec in self._held.get(tp, []) if off >= nxt]
            if kept:
                self._held[tp] = kept
            else:
                self._held.pop(tp, None)
        self.tracker.mark_committed(offsets)
        if self.on_commit is not None:
            self.on_commit()

    def _transaction(self, records: list[Record], offsets: dict[TP, int]) -> None:
        deadline = self._clock() + self.timeout_s  # one for the whole transaction, not per call
        self.producer.begin_transaction()
        for topic, key, value, headers in records:
            produce(self.producer, topic, value, key, headers)
        for topic, consumer in self.consumers.items():
            mine = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if t == topic]
            if mine:
                metadata = consumer.consumer_group_metadata()
                send = partial(self.producer.send_offsets_to_transaction, mine, metadata)
                self._call(send, "send offsets", deadline)
        self._call(self.producer.commit_transaction, "commit", deadline)

    def _call(self, step: Callable[[float], None], what: str, deadline: float) -> None:
        """Run a transaction step with what is left until `deadline` as its timeout, again while
        Kafka calls the error retriable (a broker restart); past the deadline the worker stops
        (KafkaOperationError) and its partitions go to the others at once."""
        while True:
            left = deadline - self._clock()
            if left <= 0:
                raise KafkaOperationError(
                    f"transaction {what}: Kafka did not complete it within {self.timeout_s:g} s"
                )
            try:
                step(left)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if not error.retriable():
                    raise
                log.warning("transaction %s: %s; trying again", what, error)
                self._sleep(min(0.5, left))
