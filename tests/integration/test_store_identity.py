"""A store (the workers' idempotency view, the API's result store) mirrors one cluster's topics: the
same file pointed at another cluster, at a topic created again, or at a partition whose records were
deleted under it is rebuilt instead of answering with results that are no longer there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from sluice.broker import LocalBroker, start_broker
from sluice.contract import Result, encode
from sluice.kafka import create_topics
from sluice.settings import KafkaSettings
from sluice.store import ResultStore, StoreFollower
from sluice.topics import TopicSpec
from tests.conftest import cache_dir
from tests.integration.conftest import wait_until


def settings(bootstrap: str, topic: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, results_topic=topic, results_partitions=1)


def create(s: KafkaSettings, policy: str = "compact") -> None:
    create_topics(s, [TopicSpec(s.results_topic, 1, {"cleanup.policy": policy})])


def produce(s: KafkaSettings, *outputs: tuple[str, str]) -> None:
    producer = Producer({"bootstrap.servers": s.bootstrap_servers})
    for job_id, output in outputs:
        producer.produce(
            s.results_topic, encode(Result(job_id=job_id, status="succeeded", output=output)), job_id
        )
    assert producer.flush(10) == 0


def follow(s: KafkaSettings, path: Path) -> dict[str, bytes | None]:
    """Open the store at `path`, catch it up with `s`'s results topic, and return what it holds."""
    store = ResultStore(path)
    follower = StoreFollower(s, store, with_jobs=False)
    try:
        follower.start()
        assert follower.catch_up(30)
        ids = [row[0] for row in store.db.execute("SELECT job_id FROM results")]
        return {job_id: store.result(job_id) for job_id in ids}
    finally:
        follower.close()
        store.close()


@pytest.fixture(scope="module")
def other_cluster() -> Iterator[LocalBroker]:
    broker = start_broker(cache_dir())
    yield broker
    broker.stop()


def test_the_same_file_on_another_cluster_forgets_the_first_clusters_results(
    bootstrap: str, other_cluster: LocalBroker, tmp_path: Path
) -> None:
    topic = f"results-{uuid.uuid4().hex[:8]}"
    first, second = settings(bootstrap, topic), settings(other_cluster.bootstrap_servers, topic)
    create(first)
    create(second)
    produce(first, ("job-1", "from the first cluster"))
    assert set(follow(first, tmp_path / "view.db")) == {"job-1"}
    # Same topic name, more records than the saved offset: only the cluster id tells them apart.
    produce(second, ("job-2", "a"), ("job-3", "b"), ("job-4", "c"))
    assert set(follow(second, tmp_path / "view.db")) == {"job-2", "job-3", "job-4"}


def test_a_topic_created_again_is_a_new_topic(bootstrap: str, tmp_path: Path) -> None:
    s = settings(bootstrap, f"results-{uuid.uuid4().hex[:8]}")
    create(s)
    produce(s, ("old-1", "x"))
    assert set(follow(s, tmp_path / "view.db")) == {"old-1"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([s.results_topic])[s.results_topic].result(30)
    wait_until(lambda: s.results_topic not in admin.list_topics(timeout=10).topics, 30, "the topic deleted")
    wait_until(lambda: _recreated(s), 60, "the topic created again")
    produce(s, ("new-1", "y"), ("new-2", "z"))
    assert set(follow(s, tmp_path / "view.db")) == {"new-1", "new-2"}


def _recreated(s: KafkaSettings) -> bool:
    try:
        create(s)
        return True
    except Exception:  # the broker may still be removing the old topic
        return False


def test_records_deleted_under_the_view_rebuild_it(bootstrap: str, tmp_path: Path) -> None:
    s = settings(bootstrap, f"results-{uuid.uuid4().hex[:8]}")
    create(s, "compact,delete")  # a compacted-only topic refuses DeleteRecords
    produce(s, ("a", "1"), ("b", "2"))
    assert set(follow(s, tmp_path / "view.db")) == {"a", "b"}  # saved offset 2
    produce(s, ("c", "3"), ("d", "4"), ("e", "5"))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.delete_records([TopicPartition(s.results_topic, 0, 4)]).values()
    future.result(30)  # the partition now starts at offset 4: the view's offset 2 is out of range
    assert set(follow(s, tmp_path / "view.db")) == {"e"}
