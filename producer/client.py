"""JobProducer: the library clients use to submit jobs.

    with JobProducer(ProducerSettings()) as producer:
        future = producer.submit({"model": "m", "prompt": "Hello"})
        future.result()          # -> Submitted(job_id, partition, offset) once Kafka has it

Jobs are validated before they are sent (a ContractError names the wrong field; a webhook URL the
policy forbids raises ForbiddenUrlError, see sluice/urlpolicy.py); with `max_lag` set, a job for
a topic whose workers are too far behind raises BackpressureError (producer/lag.py). The producer is
idempotent with acks=all; a background thread serves delivery callbacks so futures complete
without the caller polling.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, Producer

from producer.lag import LagGuard
from sluice.clients import MessageLike, ProducerLike
from sluice.contract import SCHEMA_VERSION, Job, decode_job, encode
from sluice.errors import ContractError, FieldProblem, KafkaOperationError
from sluice.kafka import position, produce, producer_config
from sluice.settings import ProducerSettings
from sluice.topics import route
from sluice.tracing import TRACEPARENT, ensure_traceparent, new_traceparent
from sluice.urlpolicy import ForbiddenUrlError

__all__ = ["JobProducer", "Submitted", "build_job"]


@dataclass(frozen=True, slots=True)
class Submitted:
    """Where Kafka stored a job."""

    job_id: str
    partition: int
    offset: int
    traceparent: str


def build_job(spec: Job | dict[str, Any], default_model: str | None = None) -> Job:
    """Turn a dict (JSON object) into a validated Job; `v` and `job_id` may be omitted."""
    if isinstance(spec, Job):
        return spec
    if not isinstance(spec, dict):
        raise ContractError(
            "not_an_object",
            [FieldProblem("<value>", f"expected an object, got {type(spec).__name__}")],
        )
    data = dict(spec)
    data.setdefault("v", SCHEMA_VERSION)
    if default_model is not None:
        data.setdefault("model", default_model)
    # One validation path for the wire and for callers: exactly what a worker would decode.
    return decode_job(orjson.dumps(data))


class JobProducer:
    """Submits jobs to the jobs topic; thread-safe; use as a context manager or call close()."""

    def __init__(
        self,
        settings: ProducerSettings,
        *,
        client: ProducerLike | None = None,
        lag: LagGuard | None = None,
        **client_overrides: Any,
    ) -> None:
        """`client` and `lag` replace the Kafka producer and the lag guard (tests); otherwise they
        are built from `settings` (plus librdkafka `client_overrides`)."""
        self.settings = settings
        self._producer = (
            client
            if client is not None
            else Producer(
                producer_config(
                    settings,
                    **{"delivery.timeout.ms": settings.delivery_timeout_ms},
                    **client_overrides,
                )
            )
        )
        self._policy = settings.url_policy()
        self._lag = lag or (LagGuard(settings) if settings.max_lag is not None else None)
        self._checked: dict[str, ForbiddenUrlError | None] = {}  # bulk files repeat a few URLs
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="sluice-producer-poll", daemon=True)
        self._poller.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def submit(
        self,
        job: Job | dict[str, Any],
        *,
        traceparent: str | None = None,
        topic: str | None = None,
    ) -> Future[Submitted]:
        """Validate and send one job; the future resolves once Kafka acknowledged it."""
        job = build_job(job)
        if job.webhook_url is not None:
            self.check_webhook_url(job.webhook_url)
        target = topic or self._topic_for(job)
        if self._lag is not None:
            self._lag.check(target)
        tp = ensure_traceparent(traceparent)
        future: Future[Submitted] = Future()

        def delivered(err: KafkaError | None, msg: MessageLike) -> None:
            if err is not None:
                future.set_exception(KafkaOperationError(f"job {job.job_id} not stored: {err}", err))
            else:
                (_, partition), offset = position(msg)
                future.set_result(Submitted(job.job_id, partition, offset, tp))

        headers = [(TRACEPARENT, tp.encode())]
        produce(self._producer, target, encode(job), job.job_id.encode(), headers, delivered)
        return future

    def send(self, jobs: list[Job], failures: list[BaseException]) -> None:
        """Send validated jobs without a future each (bulk paths: memory stays flat and a row costs
        one produce call); a job Kafka refuses is appended to `failures` by the delivery thread.
        The lag guard is asked once per call; call flush() to wait for them."""

        def delivered(err: KafkaError | None, msg: MessageLike) -> None:
            if err is not None:
                key = (msg.key() if msg is not None else None) or b"?"
                failures.append(KafkaOperationError(f"job {key.decode()} not stored: {err}", err))

        targets = [self._topic_for(job) for job in jobs]
        if self._lag is not None:
            for target in set(targets):
                self._lag.check(target)
        for job, target in zip(jobs, targets, strict=True):
            if job.webhook_url is not None:
                self.check_webhook_url(job.webhook_url)
            headers = [(TRACEPARENT, new_traceparent().encode())]
            produce(self._producer, target, encode(job), job.job_id.encode(), headers, delivered)

    def check_webhook_url(self, url: str) -> None:
        """Raise ForbiddenUrlError if the sink would refuse to call `url` (checked once per URL)."""
        if url not in self._checked:
            if len(self._checked) > 10_000:
                self._checked.clear()
            try:
                self._policy.check_resolved(url)
                self._checked[url] = None
            except ForbiddenUrlError as exc:
                self._checked[url] = exc
        error = self._checked[url]
        if error is not None:
            raise ForbiddenUrlError(str(error))

    def _topic_for(self, job: Job) -> str:
        jobs, high = route(self.settings, job.model)  # refuses a model no pool serves
        return high if job.priority == "high" else jobs

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for outstanding jobs to be acknowledged; returns how many are still pending."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 60.0) -> None:
        """Flush and stop the delivery thread."""
        left = self.flush(timeout)
        self._closed.set()
        self._poller.join()
        if self._lag is not None:
            self._lag.close()
        if left:
            raise KafkaOperationError(f"{left} jobs were not acknowledged within {timeout}s")

    def __enter__(self) -> JobProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
