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
from functools import partial

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from sluice.clients import ProducerLike, ReaderLike
from sluice.errors import KafkaOperationError
from sluice.kafka import is_record, produce, producer_config, reader_config, retrying
from sluice.settings import KafkaSettings
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


class DisabledEndpoints:
    """The disabled endpoints (URL -> why), as the compacted topic says; `consumer` None keeps
    them in memory only (tests)."""

    def __init__(self, topic: str, consumer: ReaderLike | None, producer: ProducerLike | None) -> None:
        self.topic = topic
        self._consumer = consumer
        self._producer = producer
        self._urls: dict[str, str] = {}
        self._next = 0  # offset of the next record to read

    def __len__(self) -> int:
        return len(self._urls)

    def __contains__(self, url: str) -> bool:
        return url in self._urls

    def get(self, url: str) -> str | None:
        """Why `url` is disabled, or None."""
        return self._urls.get(url)

    def urls(self) -> dict[str, str]:
        """URL -> why, of every disabled endpoint."""
        return dict(self._urls)

    def start(self, timeout_s: float = 30.0) -> None:
        """Read the topic up to its end as of now, then keep following it (step())."""
        if self._consumer is None:
            return
        # Right after the sink creates the topic, brokers may not list it yet: ask again a while.
        retrying(self._check_topic, f"topic {self.topic!r} (`sluice sink` creates it)", timeout_s)
        tp = TopicPartition(self.topic, 0)
        low, end = retrying(partial(self._consumer.get_watermark_offsets, tp, timeout=10), self.topic)
        self._next = low
        self._consumer.assign([TopicPartition(self.topic, 0, low)])
        deadline = time.monotonic() + timeout_s
        while self._next < end and time.monotonic() < deadline:
            self.step(timeout_s=0.1)
        if self._next < end:  # deliveries to a disabled URL then fail once more: nothing is lost
            log.warning("disabled endpoints not read to the end in %.0f s; going on", timeout_s)
        log.info("disabled endpoints loaded", extra={"disabled": len(self._urls)})

    def _check_topic(self) -> None:
        assert self._consumer is not None
        meta = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None or 0 not in meta.partitions:
            raise KafkaException(meta.error if meta is not None and meta.error else "not listed")

    def step(self, timeout_s: float = 0.0) -> None:
        """Apply what other sinks (or `sluice endpoints enable`) wrote since the last step."""
        if self._consumer is None:
            return
        for msg in self._consumer.consume(100, timeout_s):
            err = msg.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                self._next = max(self._next, msg.offset() or 0)  # the end, past any compacted gap
            if not is_record(msg, log):
                continue
            self._next = (msg.offset() or 0) + 1
            key = msg.key()
            if key is None:
                continue
            url = key.decode("utf-8", "replace")
            value = msg.value()
            if value is None:
                if self._urls.pop(url, None) is not None:
                    log.warning("endpoint enabled again", extra={"url": url})
                continue
            try:
                self._urls[url] = str(orjson.loads(value)["reason"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self._urls[url] = "disabled (unreadable record)"

    def disable(self, url: str, reason: str) -> None:
        """Disable `url` here at once and, through the topic, in every sink."""
        self._urls[url] = reason
        if self._producer is not None:
            value = orjson.dumps({"url": url, "reason": reason, "at": time.time()})
            produce(self._producer, self.topic, value, url.encode())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


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
