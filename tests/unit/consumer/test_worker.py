"""The worker loop on fake Kafka clients: commit order, rebalances, failures, backpressure, drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError

from consumer.engine import Completion
from consumer.fake_engine import FAIL_MARKER, FakeEngine
from consumer.worker import Worker
from sluice.contract import Job, Result, decode_result, encode, job_digest
from sluice.errors import EngineDeadError, RetryableError
from sluice.metrics import WorkerMetrics
from sluice.settings import WorkerSettings
from sluice.store import ResultStore
from tests.unit.fakes import FakeConsumer, FakeProducer

T = "jobs"


class GateEngine:
    """Fake engine whose jobs finish only when the test opens their gate (any order)."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.cancelled: list[str] = []
        self.started: list[str] = []

    @property
    def max_concurrency(self) -> int:
        return 1000

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def gate(self, job_id: str) -> asyncio.Event:
        return self.gates.setdefault(job_id, asyncio.Event())

    async def generate(self, job: Job) -> Completion:
        self.started.append(job.job_id)
        try:
            await self.gate(job.job_id).wait()
        except asyncio.CancelledError:
            self.cancelled.append(job.job_id)
            raise
        return Completion(f"out-{job.job_id}", "stop", 1, 1)


def make(engine: Any = None, auto_ack: bool = True, **over: Any) -> tuple[Worker, FakeConsumer, FakeProducer]:
    settings = WorkerSettings(
        jobs_topic=T,
        high_topic=over.pop("high_topic", ""),
        results_topic="results",
        dlq_topic="dlq",
        worker_id="w1",
        commit_interval_s=0.0,
        poll_timeout_s=0.005,
        drain_timeout_s=over.pop("drain_timeout_s", 5.0),
        **over,
    )
    consumer, producer = FakeConsumer(), FakeProducer(auto_ack)
    consumers: dict[str, Any] = {T: consumer}
    if settings.high_topic:
        consumers[settings.high_topic] = FakeConsumer()
    worker = Worker(settings, engine or FakeEngine(), consumers, producer, WorkerMetrics())
    return worker, consumer, producer


def add_jobs(consumer: FakeConsumer, n: int, partition: int = 0, prefix: str = "j", **job: Any) -> None:
    for i in range(n):
        jid = f"{prefix}{partition}-{i}"
        consumer.add(T, partition, encode(Job(job_id=jid, model="m", prompt=f"p {i}", **job)), jid.encode())


async def until(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Yield to the worker until predicate() holds (the limit only guards against a hang)."""
    for _ in range(int(limit / 0.002)):
        if predicate():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition never held")


def results(producer: FakeProducer, topic: str = "results") -> list[Any]:
    return [decode_result(r.value) for r in producer.acked if r.topic == topic]


async def test_commits_in_order_while_jobs_finish_out_of_order() -> None:
    engine = GateEngine()
    worker, consumer, producer = make(engine)
    add_jobs(consumer, 5)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(engine.started) == 5)
    engine.gate("j0-3").set()
    engine.gate("j0-4").set()
    await until(lambda: len(results(producer)) == 2)
    await asyncio.sleep(0.02)
    assert consumer.committed_offset((T, 0)) is None, "j0-0 is unfinished: nothing may be committed"
    engine.gate("j0-0").set()
    await until(lambda: consumer.committed_offset((T, 0)) == 1)
    engine.gate("j0-1").set()
    engine.gate("j0-2").set()
    await until(lambda: consumer.committed_offset((T, 0)) == 5)
    worker.stop()
    assert await task == 0
    assert [r.job_id for r in results(producer)] == ["j0-3", "j0-4", "j0-0", "j0-1", "j0-2"]
    assert {r.output for r in results(producer)} == {f"out-j0-{i}" for i in range(5)}


async def test_never_commits_ahead_of_a_result_kafka_has_not_acknowledged() -> None:
    worker, consumer, producer = make(auto_ack=False)
    add_jobs(consumer, 4)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(producer.unacked) == 4)
    await asyncio.sleep(0.02)
    assert consumer.commits == []
    producer.ack(2)
    await until(lambda: consumer.committed_offset((T, 0)) == 2)
    producer.ack()
    await until(lambda: consumer.committed_offset((T, 0)) == 4)
    worker.stop()
    await task


async def test_a_result_kafka_refuses_stops_the_worker_without_committing_it() -> None:
    worker, consumer, producer = make(auto_ack=False)
    add_jobs(consumer, 3)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(producer.unacked) == 3)
    producer.ack(1)
    producer.fail(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert await task == 1, "exit code 1 so the orchestrator restarts it"
    assert consumer.committed_offset((T, 0)) == 1
    assert consumer.closed


async def test_revoke_commits_what_is_done_and_cancels_the_rest() -> None:
    engine = GateEngine()
    worker, consumer, producer = make(engine)
    add_jobs(consumer, 3, partition=0)
    add_jobs(consumer, 2, partition=1)
    consumer.rebalance("assign", [(T, 0), (T, 1)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(engine.started) == 5)
    engine.gate("j0-0").set()
    await until(lambda: len(results(producer)) == 1)
    consumer.rebalance("revoke", [(T, 0)])
    await until(lambda: "j0-1" in engine.cancelled and "j0-2" in engine.cancelled)
    assert consumer.committed_offset((T, 0)) == 1
    engine.gate("j0-1").set()  # too late: the partition is gone
    engine.gate("j1-0").set()
    engine.gate("j1-1").set()
    await until(lambda: consumer.committed_offset((T, 1)) == 2)
    worker.stop()
    await task
    assert sorted(r.job_id for r in results(producer)) == ["j0-0", "j1-0", "j1-1"]


async def test_lost_partitions_are_dropped_without_a_commit() -> None:
    engine = GateEngine()
    worker, consumer, producer = make(engine, auto_ack=False)
    add_jobs(consumer, 2)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(engine.started) == 2)
    engine.gate("j0-0").set()
    await until(lambda: len(producer.unacked) == 1)
    consumer.rebalance("lost", [(T, 0)])
    await until(lambda: engine.cancelled == ["j0-1"])
    producer.ack()  # the ack of a lost partition's result must not commit anything
    worker.stop()
    await task
    assert consumer.committed_offset((T, 0)) is None


async def test_expired_jobs_are_answered_without_running() -> None:
    engine = GateEngine()
    worker, consumer, producer = make(engine)
    past = datetime.now(UTC) - timedelta(seconds=1)
    add_jobs(consumer, 2, deadline=past)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: consumer.committed_offset((T, 0)) == 2)
    worker.stop()
    await task
    assert engine.started == []
    assert {(r.status, r.error.code) for r in results(producer)} == {("expired", "deadline_exceeded")}


async def test_a_failing_job_gets_a_failed_result_and_the_others_continue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.worker.jobs")

    worker, consumer, producer = make()
    consumer.add(T, 0, encode(Job(job_id="bad", model="m", prompt=f"x {FAIL_MARKER}")), b"bad")
    add_jobs(consumer, 3)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: consumer.committed_offset((T, 0)) == 4)
    worker.stop()
    await task
    by_id = {r.job_id: r for r in results(producer)}
    assert by_id["bad"].status == "failed" and by_id["bad"].error.code == "permanent_error"
    assert [by_id[f"j0-{i}"].status for i in range(3)] == ["succeeded"] * 3
    # The access log: every published result in the "jobs done" columns, with status and error code.
    done = {
        job_id: (status, code)
        for r in caplog.records
        if r.getMessage() == "jobs done"
        for job_id, status, code in zip(r.job_id, r.status, r.error_code, strict=True)  # type: ignore[attr-defined]
    }
    assert done == {
        "bad": ("failed", "permanent_error"),
        **{f"j0-{i}": ("succeeded", None) for i in range(3)},
    }
    failures = worker.metrics.registry.get_sample_value(
        "sluice_worker_failures_total", {"code": "permanent_error"}
    )
    assert failures == 1.0


async def test_undecodable_messages_go_to_the_dlq_with_their_reason() -> None:
    worker, consumer, producer = make()
    consumer.add(T, 0, b"{nope", b"k1")
    add_jobs(consumer, 1)
    consumer.add(T, 0, orjson.dumps({"v": 7, "model": "m", "prompt": "p"}), b"k2")
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: consumer.committed_offset((T, 0)) == 3)
    worker.stop()
    await task
    dlq = [r for r in producer.acked if r.topic == "dlq"]
    assert [r.value for r in dlq] == [b"{nope", orjson.dumps({"v": 7, "model": "m", "prompt": "p"})]
    codes = [dict(r.headers or [])["sluice.error.code"] for r in dlq]
    assert codes == [b"invalid_json", b"unsupported_schema_version"]
    assert [r.job_id for r in results(producer)] == ["j0-0"]


async def test_polls_ahead_only_up_to_the_backlog_and_pauses_until_it_drains() -> None:
    engine = GateEngine()
    worker, consumer, _ = make(engine, max_in_flight=4, max_buffered=2, batch_size=2, low_water=0.5)
    add_jobs(consumer, 10)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(engine.started) == 4 and (T, 0) in consumer.paused)
    await asyncio.sleep(0.02)
    assert len(engine.started) == 4, "never more than max_in_flight on the engine"
    assert consumer.positions[(T, 0)] == 6, "4 running + 2 buffered; nothing more fetched while paused"
    engine.gate("j0-0").set()
    await until(lambda: len(engine.started) == 5 and consumer.positions[(T, 0)] == 7)
    assert (T, 0) in consumer.paused, "refilled to capacity and paused again"
    for i in range(10):
        engine.gate(f"j0-{i}").set()
    await until(lambda: consumer.committed_offset((T, 0)) == 10)
    worker.stop()
    await task


async def test_high_priority_jobs_start_first_without_starving_the_normal_topic() -> None:
    engine = GateEngine()
    worker, consumer, _ = make(engine, high_topic="jobs.high", max_in_flight=1, normal_share=0.25)
    high = worker.consumers["jobs.high"]
    assert isinstance(high, FakeConsumer)
    add_jobs(consumer, 6, prefix="n")
    for i in range(12):
        high.add("jobs.high", 0, encode(Job(job_id=f"h-{i}", model="m", prompt="p")), b"h")
    high.rebalance("assign", [("jobs.high", 0)])
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    order: list[str] = []
    for _ in range(18):
        await until(lambda: len(engine.started) == len(order) + 1)
        order.append(engine.started[-1])
        engine.gate(order[-1]).set()
    worker.stop()
    await task
    kinds = "".join("h" if j.startswith("h") else "n" for j in order)
    # While both wait, every 4th start (normal_share 0.25) is a normal job; then the rest.
    assert kinds == "hhhn" * 4 + "nn"


async def test_stop_drains_in_flight_jobs_then_commits_and_closes() -> None:
    engine = GateEngine()
    worker, consumer, _producer = make(engine)
    add_jobs(consumer, 3)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(engine.started) == 3)
    worker.stop()
    add_jobs(consumer, 2, prefix="late")
    await asyncio.sleep(0.02)
    for i in range(3):
        engine.gate(f"j0-{i}").set()
    assert await task == 0
    assert consumer.committed_offset((T, 0)) == 3
    assert consumer.closed
    assert len(engine.started) == 3, "no new work is taken while draining"


async def test_drain_timeout_leaves_unfinished_jobs_uncommitted() -> None:
    engine = GateEngine()
    worker, consumer, producer = make(engine, drain_timeout_s=0.05)
    add_jobs(consumer, 2)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(engine.started) == 2)
    engine.gate("j0-0").set()
    await until(lambda: len(results(producer)) == 1)
    worker.stop()
    assert await task == 0
    assert consumer.committed_offset((T, 0)) == 1
    assert engine.cancelled == ["j0-1"]


class FlakyEngine(GateEngine):
    """Fake engine that raises RetryableError for each job's first `failures` calls."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls: dict[str, int] = {}

    async def generate(self, job: Job) -> Completion:
        self.calls[job.job_id] = self.calls.get(job.job_id, 0) + 1
        if self.calls[job.job_id] <= self.failures:
            raise RetryableError("engine busy, try again")
        return Completion(f"out-{job.job_id}", "stop", 1, 1)


async def test_transient_engine_errors_are_retried_then_succeed() -> None:
    engine = FlakyEngine(failures=2)
    worker, consumer, producer = make(engine, engine_retries=2, engine_retry_backoff_s=0.001)
    add_jobs(consumer, 3)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: consumer.committed_offset((T, 0)) == 3)
    worker.stop()
    await task
    assert {r.status for r in results(producer)} == {"succeeded"}
    assert engine.calls == {f"j0-{i}": 3 for i in range(3)}


async def test_transient_errors_beyond_the_retry_limit_give_a_failed_result() -> None:
    engine = FlakyEngine(failures=10)
    worker, consumer, producer = make(engine, engine_retries=2, engine_retry_backoff_s=0.001)
    add_jobs(consumer, 1)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: consumer.committed_offset((T, 0)) == 1)
    worker.stop()
    await task
    (result,) = results(producer)
    assert (result.status, result.error.code) == ("failed", "engine_transient_error")
    assert engine.calls == {"j0-0": 3}


async def test_a_hung_engine_trips_the_watchdog_commits_what_is_done_and_exits_1() -> None:
    engine = GateEngine()
    worker, consumer, producer = make(engine, engine_watchdog_s=0.3)
    add_jobs(consumer, 3)
    consumer.rebalance("assign", [(T, 0)])
    engine.gate("j0-0").set()  # the first finishes; the engine then hangs on the others
    assert await worker.run() == 1
    assert [r.job_id for r in results(producer)] == ["j0-0"]
    assert consumer.committed_offset((T, 0)) == 1
    assert sorted(engine.cancelled) == ["j0-1", "j0-2"]


class DyingEngine(GateEngine):
    """Fake engine that dies (EngineDeadError) on job j0-2."""

    async def generate(self, job: Job) -> Completion:
        if job.job_id == "j0-2":
            raise EngineDeadError("out of memory")
        return Completion(f"out-{job.job_id}", "stop", 1, 1)


async def test_an_engine_that_dies_makes_the_worker_commit_what_is_done_and_exit_1() -> None:
    worker, consumer, producer = make(DyingEngine(), max_in_flight=1)
    add_jobs(consumer, 4)
    consumer.rebalance("assign", [(T, 0)])
    assert await worker.run() == 1
    answered = [r.job_id for r in results(producer)]
    assert answered[:2] == ["j0-0", "j0-1"] and "j0-2" not in answered
    assert consumer.committed_offset((T, 0)) == 2  # j0-2 and later are redelivered
    assert consumer.closed


class _Listed:
    """A cluster listing in which every topic exists (for the cancellations reader)."""

    def __init__(self, topic: str) -> None:
        self.topics = {topic: type("Meta", (), {"error": None, "partitions": {0: None}})()}


class CancelsReader(FakeConsumer):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return _Listed(str(topic))


async def test_a_cancelled_job_is_never_started_and_a_running_one_is_aborted() -> None:
    from sluice.cancels import Cancellations

    engine = GateEngine()
    worker, consumer, producer = make(engine)
    reader = CancelsReader()
    worker.cancels = Cancellations("jobs.cancel", reader, None)
    reader.add("jobs.cancel", 0, b'{"at": 1}', b"j0-0")  # asked before the worker started
    add_jobs(consumer, 3)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: engine.started == ["j0-1", "j0-2"])  # j0-0 never reaches the engine
    reader.add("jobs.cancel", 0, b'{"at": 2}', b"j0-1")  # asked while it runs
    await until(lambda: engine.cancelled == ["j0-1"])
    engine.gate("j0-2").set()
    await until(lambda: consumer.committed_offset((T, 0)) == 3)
    worker.stop()
    assert await task == 0
    by_id = {r.job_id: r for r in results(producer)}
    assert [by_id[j].status for j in ("j0-0", "j0-1", "j0-2")] == ["cancelled", "cancelled", "succeeded"]
    assert (
        by_id["j0-1"].v == 2 and by_id["j0-1"].error is not None and by_id["j0-1"].error.code == "cancelled"
    )


class StoredView:
    """Fake idempotency view: a real ResultStore with results put in by the test, nothing to follow."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def start(self) -> None:
        pass

    def catch_up(self, timeout_s: float) -> bool:
        return True

    def step(self, max_messages: int = 1000) -> int:
        return 0


@pytest.mark.parametrize("exactly_once", [False, True])
async def test_a_job_whose_id_has_a_result_is_not_run_and_once_means_one_record(
    tmp_path: Path, exactly_once: bool
) -> None:
    engine = GateEngine()
    worker, consumer, producer = make(engine, exactly_once=exactly_once)
    job = Job(job_id="done-1", model="m", prompt="p")
    stored = encode(Result(job_id="done-1", status="succeeded", output="earlier"))
    view = StoredView(ResultStore(tmp_path / "view.db"))
    view.store.apply([("done-1", "succeeded", stored, job_digest(job))], [], {("results", 0): 1})
    worker.results_view = view  # type: ignore[assignment]
    consumer.add(T, 0, encode(job), b"done-1")
    add_jobs(consumer, 1, partition=0, prefix="new")
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: engine.started == ["new0-0"])
    engine.gate("new0-0").set()
    if exactly_once:
        # The stored result is committed already: its offset goes with the next transaction, and
        # no second record for the id.
        await until(lambda: any((T, 0, 2) in offsets for _, offsets in producer.committed))
        assert [v for values, _ in producer.committed for v in values if v and b"done-1" in v] == []
    else:
        # At least once: re-published byte for byte (results are keyed: harmless).
        await until(lambda: consumer.committed_offset((T, 0)) == 2)
        assert [r.value for r in producer.acked if r.key == b"done-1"] == [stored]
    worker.stop()
    await task
    assert engine.started == ["new0-0"] and worker.stats["replayed"] == 1


async def test_partitions_assigned_during_the_drain_close_without_a_commit_inside_close() -> None:
    """close() revokes every partition through the callback; under KIP-848's group protocol a
    commit from there never returned once the group had moved a partition to the draining worker
    (bench/rebalance.py). The drain commits first; the revoke from close() commits nothing."""
    engine = GateEngine()
    worker, consumer, _producer = make(engine)
    add_jobs(consumer, 2)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(engine.started) == 2)
    worker.stop()
    add_jobs(consumer, 3, partition=1)
    consumer.rebalance("assign", [(T, 1)])  # another member left while this one drains
    await until(lambda: (T, 1) in consumer.assigned)
    for i in range(2):
        engine.gate(f"j0-{i}").set()
    assert await task == 0
    assert consumer.committed_offset((T, 0)) == 2
    assert consumer.committed_offset((T, 1)) is None, "partition 1's jobs were never taken"
    assert consumer.closed and consumer.commits_in_close == 0
    assert len(engine.started) == 2, "a partition assigned while draining is paused"


async def test_a_worker_stopped_by_an_error_commits_what_is_done_before_close() -> None:
    worker, consumer, producer = make(FakeEngine())
    worker.committer.maybe_commit = lambda: None  # type: ignore[method-assign]  # no periodic commits
    add_jobs(consumer, 3)
    consumer.rebalance("assign", [(T, 0)])
    task = asyncio.create_task(worker.run())
    await until(lambda: len(results(producer)) == 3)

    def broken() -> None:
        raise RuntimeError("the loop failed")

    worker._apply_backpressure = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="the loop failed"):
        await task
    assert consumer.committed_offset((T, 0)) == 3 and consumer.commits_in_close == 0
