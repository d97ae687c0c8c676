"""Cancelling jobs: a compacted topic of job ids asked to be cancelled, which every worker reads
whole and follows. A worker starts no job whose id is there (it publishes a `cancelled` Result
instead) and aborts a running one in its engine when its id arrives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import orjson
from confluent_kafka import Consumer, Producer

from sluice.clients import ProducerLike, ReaderLike
from sluice.kafka import producer_config, reader_config
from sluice.settings import KafkaSettings
from sluice.table import Table
from sluice.topics import cancels_topic

__all__ = ["Cancellations", "cancel_jobs", "open_cancellations"]

log = logging.getLogger("sluice.cancels")


def _at(value: bytes) -> float:
    try:
        return float(orjson.loads(value)["at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0.0


class Cancellations:
    """The job ids asked to be cancelled (see the module docstring)."""

    def __init__(self, topic: str, consumer: ReaderLike | None, producer: ProducerLike | None) -> None:
        self.topic = topic
        self._consumer = consumer
        self._table: Table[float] = Table(topic, _at, consumer, producer)
        self.enabled = True

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._table

    def start(self) -> None:
        """Read what was asked so far. Without the topic (`sluice topics create` makes it) the
        worker runs on, saying that cancel requests will not reach it."""
        if self._consumer is not None:
            listing = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if listing is None or listing.error is not None:
                log.warning("no topic %s: cancel requests will not reach this worker", self.topic)
                self.enabled = False
                return
        self._table.start(creator="sluice topics create")

    def step(self) -> list[str]:
        """The job ids asked to be cancelled since the last step."""
        if not self.enabled:
            return []
        return [job_id for job_id, at in self._table.step() if at is not None]

    def request(self, job_ids: Iterable[str]) -> None:
        now = time.time()
        value = orjson.dumps({"at": now})
        for job_id in job_ids:
            self._table.put(job_id, now, value)

    def close(self) -> None:
        self._table.close()


def open_cancellations(settings: KafkaSettings, writable: bool = False) -> Cancellations:
    producer = Producer(producer_config(settings)) if writable else None
    consumer = Consumer(reader_config(settings, "sluice-cancels-reader"))
    return Cancellations(cancels_topic(settings), consumer, producer)


def cancel_jobs(producer: ProducerLike, settings: KafkaSettings, job_ids: Iterable[str]) -> None:
    """Ask every worker to cancel `job_ids` (written through `producer`, which the caller flushes)."""
    Cancellations(cancels_topic(settings), None, producer).request(job_ids)
