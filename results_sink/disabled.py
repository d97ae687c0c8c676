"""Webhook endpoints disabled by 410 Gone, kept in Kafka so every sink knows them across restarts.

An endpoint that answers 410 has said it will never accept a delivery again (Svix and Standard
Webhooks treat it so). The sink that saw it writes one record to a compacted topic
(`<deliveries_topic>.endpoints`, key = the URL, value = why and when); every sink reads that
topic from its beginning at start and follows it while running, so the endpoint stays disabled
after a restart and in every replica, without a request to it. `sluice endpoints enable URL`
writes a tombstone, which every running sink picks up: deliveries to the URL are made again
(replay its dead letters with `sluice dlq replay --endpoint URL`).
"""

from __future__ import annotations

import logging
import time

import orjson
from confluent_kafka import Consumer, Producer

from sluice.clients import ProducerLike, ReaderLike
from sluice.errors import KafkaOperationError
from sluice.kafka import produce, producer_config, reader_config
from sluice.settings import KafkaSettings
from sluice.table import Table
from sluice.topics import endpoints_topic

__all__ = [
    "DisabledEndpoints",
    "disabled_topic",
    "enable_endpoint",
    "endpoints_reader",
    "read_disabled",
]

log = logging.getLogger("sluice.sink.endpoints")


def disabled_topic(settings: KafkaSettings) -> str:
    return endpoints_topic(settings.deliveries_topic)


def endpoints_reader(settings: KafkaSettings) -> Consumer:
    """A consumer for DisabledEndpoints: assigned, never in a group, committing nothing."""
    return Consumer(reader_config(settings, "sluice-endpoints-reader"))


def _reason(value: bytes) -> str:
    try:
        return str(orjson.loads(value)["reason"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "disabled (unreadable record)"


class DisabledEndpoints:
    """The disabled endpoints (URL -> why), as the compacted topic says; `consumer` None keeps
    them in memory only (tests)."""

    def __init__(self, topic: str, consumer: ReaderLike | None, producer: ProducerLike | None) -> None:
        self.topic = topic
        self._table: Table[str] = Table(topic, _reason, consumer, producer)

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, url: str) -> bool:
        return url in self._table

    def get(self, url: str) -> str | None:
        """Why `url` is disabled, or None."""
        return self._table.get(url)

    def urls(self) -> dict[str, str]:
        """URL -> why, of every disabled endpoint."""
        return dict(self._table.items())

    def start(self, timeout_s: float = 30.0) -> None:
        """Read the topic up to its end as of now, then keep following it (step())."""
        self._table.start(timeout_s, creator="sluice sink")
        log.info("disabled endpoints loaded", extra={"disabled": len(self._table)})

    def step(self, timeout_s: float = 0.0) -> None:
        """Apply what other sinks (or `sluice endpoints enable`) wrote since the last step."""
        for url, why in self._table.step(timeout_s):
            if why is None:
                log.warning("endpoint enabled again", extra={"url": url})

    def disable(self, url: str, reason: str) -> None:
        """Disable `url` here at once and, through the topic, in every sink."""
        self._table.put(url, reason, orjson.dumps({"url": url, "reason": reason, "at": time.time()}))

    def close(self) -> None:
        self._table.close()


def read_disabled(settings: KafkaSettings, timeout_s: float = 30.0) -> dict[str, str]:
    """URL -> why, of every endpoint disabled now (`sluice endpoints list`)."""
    endpoints = DisabledEndpoints(disabled_topic(settings), endpoints_reader(settings), None)
    try:
        endpoints.start(timeout_s)
        return endpoints.urls()
    finally:
        endpoints.close()


def enable_endpoint(settings: KafkaSettings, url: str) -> bool:
    """Enable `url` again in every sink (a tombstone); False if it was not disabled."""
    if url not in read_disabled(settings):
        return False
    producer = Producer(producer_config(settings))
    produce(producer, disabled_topic(settings), None, url.encode())
    if producer.flush(30) != 0:
        raise KafkaOperationError(f"Kafka did not acknowledge enabling {url} within 30 s")
    return True
