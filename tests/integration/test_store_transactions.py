"""A store's view of a results topic written by exactly-once workers: each transaction ends its
partitions with a commit marker, which a consumer never receives as a record, and a worker killed
inside a transaction leaves one open until the broker aborts it."""

from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka import Producer

from sluice.contract import Result, encode
from tests.integration.test_store_identity import create, follow, settings


def test_a_view_of_transactional_results_catches_up_and_resumes(bootstrap: str, tmp_path: Path) -> None:
    s = settings(bootstrap, f"results-{uuid.uuid4().hex[:8]}")
    create(s)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"test-{uuid.uuid4().hex}"})
    producer.init_transactions(30)

    def result(job_id: str) -> bytes:
        return encode(Result(job_id=job_id, status="succeeded", output=job_id))

    for job_id in ("job-1", "job-2"):
        producer.begin_transaction()
        producer.produce(s.results_topic, result(job_id), job_id)
        producer.commit_transaction(30)
    # A transaction left open, as by a worker killed inside it: its result is not committed.
    producer.begin_transaction()
    producer.produce(s.results_topic, result("job-3"), "job-3")
    assert producer.flush(10) == 0
    try:
        # follow() asserts the view caught up: the last record's offset + 1 is one short of the
        # end (the commit marker), so a view that counted records would wait out its timeout.
        assert set(follow(s, tmp_path / "view.db")) == {"job-1", "job-2"}
        # Opened again, it resumes from its saved offset, in front of that marker.
        assert set(follow(s, tmp_path / "view.db")) == {"job-1", "job-2"}
    finally:
        producer.abort_transaction(30)
