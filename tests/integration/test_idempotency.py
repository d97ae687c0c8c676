"""Idempotency on the real broker: a job id that already has a result is not run again."""

from __future__ import annotations

import pytest

from producer import JobProducer
from sluice.contract import Job
from sluice.settings import ProducerSettings
from tests.integration.conftest import Env, Procs, read_topic, wait_until
from tests.integration.test_delivery import committed_total


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_resubmitted_job_gets_its_stored_result_and_a_conflicting_one_is_reported(
    env: Env, procs: Procs, exactly_once: bool
) -> None:
    s = env.settings
    environ = env.environ(SLUICE_WORKER_EXACTLY_ONCE="1" if exactly_once else "0")
    procs.start("worker", ["worker"], environ)
    # At least once the stored result is published again (keyed: harmless); exactly once the
    # results topic already holds it, so the resubmission only moves the offset.
    copies = 1 if exactly_once else 2
    first = Job(job_id="same-1", model="m", prompt="say something once")

    def results_for(job_id: str) -> list[bytes]:
        return [
            v
            for k, v, _ in read_topic(env.bootstrap, s.results_topic, idle_s=1)
            if k == job_id.encode() and v
        ]

    with JobProducer(ProducerSettings(**s.model_dump())) as producer:
        producer.submit(first).result(30)
        wait_until(lambda: len(results_for("same-1")) == 1, 60, "the first result")
        # The same job again (a client retry: same id and content, a later submitted_at).
        producer.submit(Job(job_id="same-1", model="m", prompt="say something once")).result(30)
        group = environ["SLUICE_WORKER_GROUP_ID"]
        wait_until(lambda: committed_total(env, group, s.jobs_topic) == 2, 60, "the resubmission's offset")
        wait_until(lambda: len(results_for("same-1")) == copies, 60, "the stored result")
        # A different job that reuses the id.
        producer.submit(Job(job_id="same-1", model="m", prompt="something else")).result(30)
        wait_until(
            lambda: len(read_topic(env.bootstrap, s.dlq_topic, idle_s=1)) == 1, 60, "the conflict in the DLQ"
        )

    found = results_for("same-1")
    assert len(found) == copies and found[-1] == found[0], "byte for byte: the engine did not run it again"
    ((key, _, headers),) = read_topic(env.bootstrap, s.dlq_topic)
    codes = dict(headers)
    assert key == b"same-1" and codes["sluice.error.code"] == b"job_id_conflict"
    assert b"different job" in codes["sluice.error.message"]
    assert len(results_for("same-1")) == copies  # the conflicting job produced no result
