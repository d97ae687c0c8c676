"""Idempotency on the real broker: a job id that already has a result is not run again."""

from __future__ import annotations

from producer import JobProducer
from sluice.contract import Job
from sluice.settings import ProducerSettings
from tests.integration.conftest import Env, Procs, read_topic, wait_until


def test_a_resubmitted_job_gets_its_stored_result_and_a_conflicting_one_is_reported(
    env: Env, procs: Procs
) -> None:
    s = env.settings
    procs.start("worker", ["worker"], env.environ())
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
        wait_until(lambda: len(results_for("same-1")) == 2, 60, "the re-published result")
        # A different job that reuses the id.
        producer.submit(Job(job_id="same-1", model="m", prompt="something else")).result(30)
        wait_until(
            lambda: len(read_topic(env.bootstrap, s.dlq_topic, idle_s=1)) == 1, 60, "the conflict in the DLQ"
        )

    original, replayed = results_for("same-1")
    assert replayed == original, "the stored result, byte for byte: the engine did not run it again"
    ((key, _, headers),) = read_topic(env.bootstrap, s.dlq_topic)
    codes = dict(headers)
    assert key == b"same-1" and codes["sluice.error.code"] == b"job_id_conflict"
    assert b"different job" in codes["sluice.error.message"]
    assert len(results_for("same-1")) == 2  # the conflicting job produced no result
