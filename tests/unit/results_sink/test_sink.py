"""The sink's delivery logic on fakes: FakeConsumer/FakeProducer for Kafka, FakePoster for HTTP.

No broker and no network; tests/integration/test_delivery.py runs the same paths for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pytest

from results_sink.deliveries import Attempt, Delivery, decode_delivery
from results_sink.http import Outcome
from results_sink.sink import Sink
from sluice.contract import Result, encode
from sluice.metrics import SinkMetrics
from sluice.settings import SinkSettings, Subscription
from tests.unit.fakes import FakeConsumer, FakeProducer
from tests.webhook_spec import spec_valid

SECRET = "whsec_c2x1aWNlLXVuaXQtdGVzdA=="
SUB_SECRET = "whsec_c3Vic2NyaXB0aW9uLXNlY3JldA=="
RESULTS = "results"


@dataclass
class Call:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class FakePoster:
    """Fake HTTP: answers per URL from a script (last entry repeats); can hold a URL's requests."""

    script: dict[str, list[Outcome]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        self.calls.append(Call(url, body, headers))
        gate = self.gates.get(url)
        if gate is not None:
            await gate.wait()
        answers = self.script.get(url, [Outcome(204)])
        seen = sum(1 for c in self.calls if c.url == url)
        return answers[min(seen, len(answers)) - 1]

    async def close(self) -> None:
        pass

    def to(self, url: str) -> list[Call]:
        return [c for c in self.calls if c.url == url]


def result(job_id: str, url: str | None, tenant: str | None = None, model: str = "m") -> bytes:
    return encode(
        Result(job_id=job_id, status="succeeded", model=model, output="hi", tenant=tenant, webhook_url=url)
    )


def make_sink(
    poster: FakePoster, **overrides: object
) -> tuple[Sink, FakeConsumer, FakeConsumer, FakeProducer]:
    fields: dict[str, object] = {
        "results_topic": RESULTS,
        "deliveries_topic": "dl",
        "webhook_secrets": [SECRET],
        "retry_schedule": [0, 1, 5],
        "retry_jitter": 0.0,
        "commit_interval_s": 0.0,
    }
    settings = SinkSettings.model_validate({**fields, **overrides})
    results, retries, producer = FakeConsumer(), FakeConsumer(), FakeProducer()
    sink = Sink(settings, results, retries, producer, poster, SinkMetrics())
    results.rebalance("assign", [(RESULTS, 0)])
    retries.rebalance("assign", [(t, 0) for t in sink.plan.tier_topics])
    return sink, results, retries, producer


def run_until(sink: Sink, done: Callable[[], bool], timeout: float = 5.0) -> None:
    async def main() -> None:
        runner = asyncio.create_task(sink.run())
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        sink.stop()
        await runner

    asyncio.run(main())
    assert done(), "condition not reached"


def produced(producer: FakeProducer, topic: str) -> list[Delivery]:
    return [decode_delivery(p.value) for p in producer.acked if p.topic == topic]


def test_delivers_signed_per_spec_and_commits() -> None:
    poster = FakePoster()
    sink, results, retries, _ = make_sink(poster)
    results.add(RESULTS, 0, result("job-1", "https://a.example/hook"))
    run_until(sink, lambda: results.committed_offset((RESULTS, 0)) == 1)
    (call,) = poster.calls
    assert call.headers["webhook-id"] == "job-1"
    assert spec_valid(SECRET, call.headers, call.body)
    assert call.headers["content-type"] == "application/json"
    assert sink.stats["delivered"] == 1
    # The drain committed; close() revoked both consumers' partitions without a commit of its own
    # (one from there never returns under KIP-848's group protocol).
    assert results.closed and retries.closed
    assert results.commits_in_close == 0 and retries.commits_in_close == 0


def test_rotation_signs_with_every_active_secret() -> None:
    new = "whsec_bmV3LXNlY3JldC1mb3Itcm90YXRpb24="
    poster = FakePoster()
    sink, results, _, _ = make_sink(poster, webhook_secrets=[new, SECRET])
    results.add(RESULTS, 0, result("job-1", "https://a.example/hook"))
    run_until(sink, lambda: len(poster.calls) == 1)
    headers, body = poster.calls[0].headers, poster.calls[0].body
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert spec_valid(new, headers, body) and spec_valid(SECRET, headers, body)


def test_failed_attempt_goes_to_the_first_retry_tier_with_history_and_the_source_is_committed() -> None:
    poster = FakePoster({"https://a.example/hook": [Outcome(500)]})
    sink, results, _, producer = make_sink(poster)
    results.add(RESULTS, 0, result("job-1", "https://a.example/hook"))
    before = time.time()
    run_until(sink, lambda: results.committed_offset((RESULTS, 0)) == 1)
    (retry,) = produced(producer, "dl.retry.1s")
    assert retry.attempt == 2 and retry.job_id == "job-1"
    assert [(a.attempt, a.status) for a in retry.history] == [(1, 500)]
    assert before + 1 <= retry.due_at <= time.time() + 1


def test_a_due_retry_record_is_attempted_and_a_future_one_holds_its_partition() -> None:
    poster = FakePoster()
    sink, _, retries, _ = make_sink(poster)
    due = Delivery(job_id="due", url="https://a.example/hook", attempt=2, due_at=time.time() - 1, body="{}")
    later = Delivery(
        job_id="later", url="https://a.example/hook", attempt=2, due_at=time.time() + 0.6, body="{}"
    )
    now_ms = int(time.time() * 1000)
    retries.add("dl.retry.1s", 0, due.encode(), timestamp_ms=now_ms - 1000)
    retries.add("dl.retry.1s", 0, later.encode(), timestamp_ms=now_ms)
    start = time.monotonic()
    run_until(sink, lambda: retries.committed_offset(("dl.retry.1s", 0)) == 2)
    assert [c.headers["webhook-id"] for c in poster.calls] == ["due", "later"]
    assert time.monotonic() - start >= 0.5  # "later" waited for its due time


def test_a_released_record_not_yet_due_hops_on_instead_of_holding_its_partition() -> None:
    poster = FakePoster()
    sink, _, retries, producer = make_sink(poster)
    hour = time.time() + 3600  # e.g. a Retry-After longer than every tier
    far = Delivery(job_id="far", url="https://a.example/hook", attempt=2, due_at=hour, body="{}")
    due = Delivery(job_id="due", url="https://a.example/hook", attempt=2, due_at=time.time(), body="{}")
    released = int(time.time() * 1000) - 5000  # both produced 5 s ago to the 1 s tier
    retries.add("dl.retry.1s", 0, far.encode(), timestamp_ms=released)
    retries.add("dl.retry.1s", 0, due.encode(), timestamp_ms=released)
    run_until(sink, lambda: retries.committed_offset(("dl.retry.1s", 0)) == 2)
    assert [c.headers["webhook-id"] for c in poster.calls] == ["due"]
    (hopped,) = produced(producer, "dl.retry.5s")
    assert hopped.job_id == "far" and hopped.due_at == pytest.approx(hour) and hopped.attempt == 2


def test_retry_after_is_honoured_for_429() -> None:
    poster = FakePoster({"https://a.example/hook": [Outcome(429, retry_after="4")]})
    sink, results, _, producer = make_sink(poster)
    results.add(RESULTS, 0, result("job-1", "https://a.example/hook"))
    run_until(sink, lambda: results.committed_offset((RESULTS, 0)) == 1)
    (retry,) = produced(producer, "dl.retry.1s")  # the largest tier not above 4 s; it hops on from there
    assert 3.5 <= retry.due_at - retry.history[0].at <= 4.5


def test_last_attempt_dead_letters_with_the_whole_history() -> None:
    poster = FakePoster({"https://a.example/hook": [Outcome(503)]})
    sink, _, retries, producer = make_sink(poster)
    last = Delivery(job_id="j", url="https://a.example/hook", attempt=3, body="{}")
    last.history = [Attempt(attempt=1, at=1.0, status=500), Attempt(attempt=2, at=2.0, error="timeout")]
    retries.add("dl.retry.5s", 0, last.encode())
    run_until(sink, lambda: bool(produced(producer, "dl.dlq")))
    (dead,) = produced(producer, "dl.dlq")
    assert dead.reason == "attempts_exhausted" and dead.detail == "HTTP 503"
    assert [a.attempt for a in dead.history] == [1, 2, 3]


def test_410_disables_the_endpoint() -> None:
    url = "https://gone.example/hook"
    poster = FakePoster({url: [Outcome(410)]})
    sink, results, _, producer = make_sink(poster, endpoint_concurrency=1)
    results.add(RESULTS, 0, result("j1", url))
    results.add(RESULTS, 0, result("j2", url))
    run_until(sink, lambda: len(produced(producer, "dl.dlq")) == 2)
    assert len(poster.to(url)) == 1
    assert [d.reason for d in produced(producer, "dl.dlq")] == ["endpoint_gone", "endpoint_disabled"]
    # ... and says so on the endpoints topic, which every sink (and the next one) reads.
    (record,) = [p for p in producer.acked if p.topic == "dl.endpoints"]
    assert record.key == url.encode() and "410" in orjson.loads(record.value or b"")["reason"]
    assert sink.metrics.registry.get_sample_value("sluice_sink_disabled_endpoints") == 1


def test_forbidden_url_is_dead_lettered_without_a_request() -> None:
    poster = FakePoster()
    sink, results, _, producer = make_sink(poster)
    results.add(RESULTS, 0, result("j1", "https://169.254.169.254/latest/meta-data"))
    run_until(sink, lambda: bool(produced(producer, "dl.dlq")))
    assert produced(producer, "dl.dlq")[0].reason == "forbidden_url"


def test_slow_endpoint_does_not_hold_up_another_and_its_line_moves_to_a_retry_tier() -> None:
    slow, fast = "https://slow.example/h", "https://fast.example/h"
    poster = FakePoster(gates={slow: asyncio.Event()})
    sink, results, _, producer = make_sink(
        poster, endpoint_concurrency=2, endpoint_max_wait_s=0.2, drain_timeout_s=0.1
    )
    for i in range(10):
        results.add(RESULTS, 0, result(f"s{i}", slow))
    for i in range(5):
        results.add(RESULTS, 0, result(f"f{i}", fast))
    run_until(sink, lambda: len(poster.to(fast)) == 5 and len(produced(producer, "dl.retry.1s")) == 8)
    assert len(poster.to(slow)) == 2  # its connection limit; the 8 waiting went to the retry tier
    moved = produced(producer, "dl.retry.1s")
    assert {d.job_id for d in moved} == {f"s{i}" for i in range(2, 10)}
    assert all(d.attempt == 1 and not d.history for d in moved)  # no attempt used up
    assert results.committed_offset((RESULTS, 0)) is None  # s0, s1 are not settled yet
    poster.gates[slow].set()


def test_breaker_opens_after_consecutive_failures_and_defers_without_requests() -> None:
    url = "https://down.example/h"
    poster = FakePoster({url: [Outcome(None, error="connect failed")]})
    sink, results, _, producer = make_sink(
        poster, breaker_failures=3, endpoint_concurrency=1, breaker_cooldown_s=60
    )
    for i in range(6):
        results.add(RESULTS, 0, result(f"j{i}", url))
    run_until(sink, lambda: results.committed_offset((RESULTS, 0)) == 6)
    assert len(poster.to(url)) == 3
    assert sink.metrics.deferred.labels("circuit_open")._value.get() == 3
    open_deferred = [d for d in produced(producer, "dl.retry.5s") if not d.history]
    assert len(open_deferred) == 3 and all(d.attempt == 1 for d in open_deferred)  # no attempt used


def test_subscriptions_get_matching_results_signed_with_their_own_secret() -> None:
    sub = Subscription(id="billing", url="https://billing.example/in", secrets=[SUB_SECRET], tenants=["acme"])
    poster = FakePoster()
    sink, results, _, _ = make_sink(poster, subscriptions=[sub])
    results.add(RESULTS, 0, result("mine", None, tenant="acme"))
    results.add(RESULTS, 0, result("other", None, tenant="globex"))
    results.add(RESULTS, 0, result("both", "https://a.example/hook", tenant="acme"))
    run_until(sink, lambda: results.committed_offset((RESULTS, 0)) == 3)
    to_sub = poster.to("https://billing.example/in")
    assert [c.headers["webhook-id"] for c in to_sub] == ["mine", "both"]
    assert all(spec_valid(SUB_SECRET, c.headers, c.body) for c in to_sub)
    assert not spec_valid(SECRET, to_sub[0].headers, to_sub[0].body)
    assert [c.headers["webhook-id"] for c in poster.to("https://a.example/hook")] == ["both"]
    assert sink.stats["skipped"] == 1


async def test_a_record_that_cannot_be_stored_stops_the_sink_uncommitted() -> None:
    from confluent_kafka import KafkaError

    poster = FakePoster({"https://a.example/hook": [Outcome(500)]})
    sink, results, _, producer = make_sink(poster)
    producer.auto_ack = False
    results.add(RESULTS, 0, result("job-1", "https://a.example/hook"))
    runner = asyncio.create_task(sink.run())
    while not producer.unacked:
        await asyncio.sleep(0.01)
    producer.fail(KafkaError(KafkaError._MSG_TIMED_OUT))
    assert await runner == 1
    assert results.committed_offset((RESULTS, 0)) is None


@pytest.mark.parametrize("bad", [b"not json", b'{"v": 1}'])
def test_undecodable_results_are_reported_and_skipped(bad: bytes) -> None:
    sink, results, _, _ = make_sink(FakePoster())
    results.add(RESULTS, 0, bad)
    run_until(sink, lambda: results.committed_offset((RESULTS, 0)) == 1)
    assert sink.stats["invalid"] == 1


def test_a_long_retry_never_holds_back_deferrals_behind_it_in_its_tier() -> None:
    """The stall of issue 12 (A6): a receiver fails its first requests, the breaker opens and
    defers the line; a delivery whose second attempt failed waits 600 s in the 600 s tier, and
    deferrals due in a second, produced behind it to the same tier partition, waited with it."""
    url = "https://flaky.example/hook"
    poster = FakePoster({url: [Outcome(500)] * 6 + [Outcome(204)]})
    settings = {
        "results_topic": RESULTS,
        "deliveries_topic": "dl",
        "webhook_secrets": [SECRET],
        "retry_schedule": [0, 0.2, 600],
        "retry_jitter": 0.0,
        "commit_interval_s": 0.0,
        "breaker_failures": 2,
        "breaker_cooldown_s": 0.3,
        "endpoint_concurrency": 2,
    }
    results, retries, producer = FakeConsumer(), FakeConsumer(), FakeProducer()
    plan_topics = ["dl.retry.0.2s", "dl.retry.600s"]

    def loop_back(topic: str, value: bytes | None, key: bytes | None) -> None:
        if topic in plan_topics:  # back on the retry consumer, as from Kafka, stamped now
            retries.add(topic, 0, value, key, timestamp_ms=int(time.time() * 1000))

    producer.listeners.append(loop_back)
    sink = Sink(SinkSettings.model_validate(settings), results, retries, producer, poster, SinkMetrics())
    assert sink.plan.tier_topics == plan_topics
    results.rebalance("assign", [(RESULTS, 0)])
    retries.rebalance("assign", [(t, 0) for t in plan_topics])
    ids = [f"j{i}" for i in range(40)]
    for job_id in ids:
        results.add(RESULTS, 0, result(job_id, url))

    def failures() -> dict[str, int]:
        seen: dict[str, int] = {}
        for i, call in enumerate(poster.to(url)):
            if i < 6:
                seen[call.headers["webhook-id"]] = seen.get(call.headers["webhook-id"], 0) + 1
        return seen

    def delivered() -> set[str]:
        return {c.headers["webhook-id"] for c in poster.to(url)[6:]}

    def settled() -> bool:  # everything delivered but what the schedule holds for 600 s
        owed = {j for j in ids if failures().get(j, 0) < 2}
        return owed <= delivered()

    run_until(sink, settled, timeout=15)
    assert any(n >= 2 for n in failures().values())  # some delivery does wait 600 s in its tier


async def test_a_probe_answered_4xx_closes_the_breaker() -> None:
    url = "https://picky.example/hook"
    poster = FakePoster({url: [Outcome(503), Outcome(400), Outcome(204)]})
    sink, results, retries, producer = make_sink(poster, breaker_failures=1, breaker_cooldown_s=0.2)
    results.add(RESULTS, 0, result("a", url))  # 503: the breaker opens
    probe = Delivery(job_id="b", url=url, attempt=2, due_at=time.time() + 0.3, body="{}")
    retries.add("dl.retry.1s", 0, probe.encode(), timestamp_ms=int(time.time() * 1000))

    async def later() -> None:  # after the probe was answered 400, a new result comes in
        while len(poster.to(url)) < 2:
            await asyncio.sleep(0.01)
        results.add(RESULTS, 0, result("c", url))

    feeder = asyncio.create_task(later())
    runner = asyncio.create_task(sink.run())
    deadline = time.monotonic() + 5
    while len(poster.to(url)) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    sink.stop()
    await runner
    feeder.cancel()
    assert [c.headers["webhook-id"] for c in poster.to(url)] == ["a", "b", "c"]
    assert not [d for d in produced(producer, "dl.retry.1s") if d.job_id == "c"]  # not deferred
