"""JobProducer on a fake Kafka producer: what it sends, where, and when its future resolves."""

from __future__ import annotations

import pytest

from producer.client import JobProducer, build_job
from sluice.contract import decode_job
from sluice.errors import ContractError, KafkaOperationError
from sluice.settings import ProducerSettings
from sluice.urlpolicy import ForbiddenUrlError
from tests.unit.fakes import FakeProducer

SETTINGS = ProducerSettings(jobs_topic="jobs", high_topic="jobs.high")


def test_build_job_fills_the_version_and_the_default_model_and_names_bad_fields() -> None:
    job = build_job({"prompt": "hi"}, default_model="m")
    assert job.model == "m" and job.v >= 1 and job.job_id
    with pytest.raises(ContractError) as caught:
        build_job({"model": "m", "prompt": "hi", "sampling": {"max_tokens": -1}})
    assert [p.field for p in caught.value.problems] == ["sampling.max_tokens"]
    with pytest.raises(ContractError, match="expected an object"):
        build_job(["not", "an", "object"])  # type: ignore[arg-type]


def test_submit_resolves_once_kafka_acknowledged_and_routes_by_priority() -> None:
    kafka = FakeProducer(auto_ack=False)
    with JobProducer(SETTINGS, client=kafka) as producer:
        normal = producer.submit({"job_id": "a", "model": "m", "prompt": "p"})
        high = producer.submit({"job_id": "b", "model": "m", "prompt": "p", "priority": "high"})
        assert not normal.done() and not high.done()
        kafka.ack()
        done = normal.result(timeout=5)
        assert (done.job_id, done.partition, done.offset) == ("a", 0, 0)
        assert high.result(timeout=5).job_id == "b"
    (to_jobs,) = [r for r in kafka.acked if r.topic == "jobs"]
    (to_high,) = [r for r in kafka.acked if r.topic == "jobs.high"]
    assert to_jobs.key == b"a" and decode_job(to_jobs.value).prompt == "p"
    assert dict(to_jobs.headers or [])["traceparent"] == done.traceparent.encode()
    assert to_high.key == b"b"


def test_with_pools_each_job_goes_to_its_models_pool_and_an_unserved_model_is_refused() -> None:
    settings = SETTINGS.model_copy(update={"pools": {"m-small": "small", "m-big": "big"}})
    kafka = FakeProducer()
    with JobProducer(settings, client=kafka) as producer:
        producer.submit({"job_id": "a", "model": "m-small", "prompt": "p"}).result(timeout=5)
        producer.submit({"job_id": "b", "model": "m-big", "prompt": "p", "priority": "high"}).result(
            timeout=5
        )
        with pytest.raises(ContractError) as caught:
            producer.submit({"job_id": "c", "model": "m-other", "prompt": "p"})
    assert caught.value.code == "unknown_model"
    assert [p.field for p in caught.value.problems] == ["model"]
    assert "'m-other'" in str(caught.value) and "m-big, m-small" in str(caught.value)
    assert [(r.topic, r.key) for r in kafka.acked] == [("jobs.small", b"a"), ("jobs.high.big", b"b")]


def test_a_record_kafka_refused_fails_its_future() -> None:
    from confluent_kafka import KafkaError

    kafka = FakeProducer(auto_ack=False)
    producer = JobProducer(SETTINGS, client=kafka)
    future = producer.submit({"job_id": "a", "model": "m", "prompt": "p"})
    kafka.fail(KafkaError(KafkaError._MSG_TIMED_OUT))
    with pytest.raises(KafkaOperationError, match="job a not stored"):
        future.result(timeout=5)
    producer.close()


def test_send_routes_jobs_without_futures_and_notes_what_kafka_refused() -> None:
    from confluent_kafka import KafkaError

    kafka = FakeProducer(auto_ack=False)
    failures: list[BaseException] = []
    with JobProducer(SETTINGS, client=kafka) as producer:
        jobs = [build_job({"job_id": j, "model": "m", "prompt": "p"}) for j in ("a", "b")]
        producer.send(
            [*jobs, build_job({"job_id": "c", "model": "m", "prompt": "p", "priority": "high"})], failures
        )
        kafka.ack(2)
        kafka.fail(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert [(r.topic, r.key) for r in kafka.acked] == [("jobs", b"a"), ("jobs", b"b")]
    assert all(dict(r.headers or [])["traceparent"] for r in kafka.acked)
    assert [str(f) for f in failures] == [
        'job ? not stored: KafkaError{code=_MSG_TIMED_OUT,val=-192,str="Local: Message timed out"}'
    ]


def test_a_forbidden_webhook_is_refused_before_anything_is_sent() -> None:
    kafka = FakeProducer()
    with JobProducer(SETTINGS, client=kafka) as producer, pytest.raises(ForbiddenUrlError):
        producer.submit({"model": "m", "prompt": "p", "webhook_url": "http://127.0.0.1/hook"})
    assert kafka.acked == [] and kafka.unacked == []


def test_close_says_how_many_jobs_kafka_never_acknowledged() -> None:
    producer = JobProducer(SETTINGS, client=FakeProducer(auto_ack=False))
    producer.submit({"model": "m", "prompt": "p"})
    with pytest.raises(KafkaOperationError, match="1 jobs were not acknowledged"):
        producer.close(timeout=0.1)
