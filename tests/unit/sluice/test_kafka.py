"""Client configs: what each group protocol's members send (librdkafka checks them when a client is
made, so each config here is handed to a real Consumer, which needs no broker to be made)."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException

from sluice.kafka import consumer_config
from sluice.settings import KafkaSettings

TIMEOUTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "max.poll.interval.ms": 60_000}


def made(conf: dict[str, object]) -> dict[str, object]:
    Consumer(conf).close()
    return conf


def test_a_classic_member_is_cooperative_sticky_with_its_own_session() -> None:
    conf = made(consumer_config(KafkaSettings(), "g", **TIMEOUTS))
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["session.timeout.ms"] == 6000 and "group.protocol" not in conf


def test_a_consumer_protocol_member_leaves_assignment_and_session_to_the_broker() -> None:
    conf = made(consumer_config(KafkaSettings(group_protocol="consumer"), "g", **TIMEOUTS))
    assert conf["group.protocol"] == "consumer"
    assert not {"partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"} & set(conf)
    # Client-side under either protocol: how long a member may go between polls.
    assert conf["max.poll.interval.ms"] == 60_000 and conf["isolation.level"] == "read_committed"


def test_librdkafka_refuses_what_the_consumer_protocol_leaves_out() -> None:
    """Why consumer_config drops them: the failure a member would otherwise meet at start."""
    conf = consumer_config(KafkaSettings(), "g", **TIMEOUTS) | {"group.protocol": "consumer"}
    with pytest.raises(KafkaException, match=r"not supported for `group\.protocol=consumer`"):
        made(conf)
