"""DisabledEndpoints on fakes: what it reads from the endpoints topic and what it writes there."""

from __future__ import annotations

import orjson

from results_sink.disabled import DisabledEndpoints
from tests.unit.fakes import FakeConsumer, FakeProducer

TOPIC = "dl.endpoints"


def following(consumer: FakeConsumer) -> DisabledEndpoints:
    consumer.assigned = [(TOPIC, 0)]
    return DisabledEndpoints(TOPIC, consumer, None)


def disabled_record(url: str, reason: str) -> bytes:
    return orjson.dumps({"url": url, "reason": reason, "at": 0})


def test_applies_disables_and_enables_from_other_sinks_in_order() -> None:
    consumer = FakeConsumer()
    endpoints = following(consumer)
    a, b = "https://a.example/h", "https://b.example/h"
    consumer.add(TOPIC, 0, disabled_record(a, "answered 410 Gone at 1"), a.encode())
    consumer.add(TOPIC, 0, disabled_record(b, "answered 410 Gone at 2"), b.encode())
    endpoints.step()
    assert endpoints.urls() == {a: "answered 410 Gone at 1", b: "answered 410 Gone at 2"}
    consumer.add(TOPIC, 0, None, a.encode())  # `sluice endpoints enable a`
    endpoints.step()
    assert a not in endpoints and endpoints.get(b) == "answered 410 Gone at 2"
    consumer.add(TOPIC, 0, disabled_record(a, "answered 410 Gone at 3"), a.encode())
    endpoints.step()
    assert endpoints.get(a) == "answered 410 Gone at 3"


def test_an_unreadable_record_still_disables_its_url() -> None:
    # Keeping a URL disabled by mistake costs a replay; delivering to an endpoint that said
    # "gone" would ignore what it asked for.
    consumer = FakeConsumer()
    endpoints = following(consumer)
    consumer.add(TOPIC, 0, b"{not json", b"https://c.example/h")
    consumer.add(TOPIC, 0, b"[]", b"https://d.example/h")
    endpoints.step()
    assert set(endpoints.urls()) == {"https://c.example/h", "https://d.example/h"}


def test_disable_takes_effect_at_once_and_is_written_keyed_by_url() -> None:
    producer = FakeProducer()
    endpoints = DisabledEndpoints(TOPIC, None, producer)
    endpoints.disable("https://e.example/h", "answered 410 Gone at 5")
    assert endpoints.get("https://e.example/h") == "answered 410 Gone at 5"
    producer.poll()
    (record,) = producer.acked
    assert (record.topic, record.key) == (TOPIC, b"https://e.example/h")
    assert orjson.loads(record.value or b"")["reason"] == "answered 410 Gone at 5"


class _Listing:
    def __init__(self, topics: dict[str, object]) -> None:
        self.topics = topics


class _Meta:
    def __init__(self) -> None:
        self.error = None
        self.partitions = {0: object()}


class NewTopicConsumer(FakeConsumer):
    """A fake consumer whose broker lists the topic only from the third metadata request on,
    as a fresh broker does right after the topic is created."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> _Listing:
        self.asked += 1
        return _Listing({str(topic): _Meta()} if self.asked >= 3 else {})


def test_start_waits_for_a_topic_just_created() -> None:
    consumer = NewTopicConsumer()
    endpoints = DisabledEndpoints(TOPIC, consumer, None)
    endpoints.start(timeout_s=10)
    assert consumer.asked == 3 and consumer.assigned == [(TOPIC, 0)]
