"""End to end on the real broker: producer -> workers (real processes) -> results -> sink -> receiver."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer

from consumer.fake_engine import fake_completion
from producer import JobProducer
from results_sink import decode_secret, start_receiver
from sluice.broker import free_port
from sluice.contract import Job, Result, encode
from sluice.settings import ProducerSettings
from sluice.tracing import new_traceparent, trace_id
from tests.integration.conftest import SECRET, Env, Procs, read_results, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def log_entries(procs: Procs) -> list[dict[str, Any]]:
    """Every JSON log line the test's processes wrote (librdkafka's plain lines are skipped)."""
    entries = []
    for line in procs.logs().splitlines():
        if line.startswith("{"):
            entries.append(orjson.loads(line))
    return entries


def owns_partitions(procs: Procs, worker_id: str, topic: str) -> bool:
    """Whether the worker's latest assignment event for `topic` left it owning partitions."""
    owned: set[str] = set()
    for e in log_entries(procs):
        if e.get("worker_id") != worker_id or "partitions" not in e:
            continue
        parts = {p for p in e["partitions"] if p.startswith(f"{topic}:")}
        if e["msg"] == "partitions assigned":
            owned |= parts
        elif e["msg"] in ("partitions revoked", "partitions lost"):
            owned -= parts
    return bool(owned)


def submit_jobs(env: Env, n: int, webhook_url: str | None) -> tuple[list[Job], dict[str, str]]:
    jobs = [
        Job(
            job_id=f"job-{i:05d}",
            model="tiny",
            prompt=f"prompt number {i} with some words",
            webhook_url=webhook_url,
            metadata={"row": i},
        )
        for i in range(n)
    ]
    traces: dict[str, str] = {}
    settings = ProducerSettings(**env.settings.model_dump())
    with JobProducer(settings) as producer:
        futures = []
        for job in jobs:
            tp = new_traceparent()
            traces[job.job_id] = tp
            futures.append(producer.submit(job, traceparent=tp))
        producer.flush()
        assert all(f.result().job_id for f in futures)
    return jobs, traces


def test_2000_jobs_two_workers_every_job_one_result_and_one_webhook(env: Env, procs: Procs) -> None:
    receiver = start_receiver(decode_secret(SECRET))
    try:
        worker_env = env.environ(SLUICE_WORKER_FAKE_LATENCY_S="0.002")
        metrics_port = free_port()
        debug = ["--log-level", "DEBUG"]
        procs.start(
            "worker-a",
            [*debug, "worker", "--worker-id", "wa", "--metrics-port", str(metrics_port)],
            worker_env,
        )
        procs.start("worker-b", [*debug, "worker", "--worker-id", "wb"], worker_env)
        procs.start("sink", [*debug, "sink"], env.environ())
        # Both members must own jobs partitions before the jobs arrive, or the first one to join
        # may finish all 2,000 before the second gets any.
        jobs_topic = env.settings.jobs_topic
        wait_until(
            lambda: owns_partitions(procs, "wa", jobs_topic) and owns_partitions(procs, "wb", jobs_topic),
            60,
            "both workers to own partitions of the jobs topic",
        )
        jobs, traces = submit_jobs(env, 2000, receiver.url)

        wait_until(lambda: receiver.stats()["unique"] >= 2000, 180, "2000 webhooks")
        results = read_results(env.bootstrap, env.settings.results_topic)
    finally:
        receiver.stop()

    by_id: dict[str, list[object]] = {}
    for r in results:
        by_id.setdefault(r.job_id, []).append(r)
    assert set(by_id) == {j.job_id for j in jobs}
    assert all(len(v) == 1 for v in by_id.values()), "a clean run publishes exactly one result per job"
    workers: Counter[str | None] = Counter()
    for job in jobs:
        (result,) = by_id[job.job_id]
        expected = fake_completion(job)
        assert result.status == "succeeded"  # type: ignore[attr-defined]
        assert result.output == expected.output  # type: ignore[attr-defined]
        assert result.output_tokens == expected.output_tokens  # type: ignore[attr-defined]
        assert result.metadata == job.metadata  # type: ignore[attr-defined]
        workers[result.worker_id] += 1  # type: ignore[attr-defined]
    assert set(workers) == {"wa", "wb"}, f"both workers should share the work: {workers}"

    stats = receiver.stats()
    assert stats["bad_signature"] == 0
    assert set(receiver.counts) == {j.job_id for j in jobs}
    # The caller's trace continues through worker and sink to the webhook.
    for job_id, tp in list(traces.items())[:200]:
        assert trace_id(receiver.traceparents[job_id]) == trace_id(tp)
    assert receiver.bodies["job-00042"]["output"] == fake_completion(jobs[42]).output

    # ... and is in every log line about a job, worker and sink alike; the worker's "jobs done"
    # access lines are columnar (a list of job ids, a list of their traceparents).
    mentions = [
        (e["service"], e["msg"], job_id, tp)
        for e in log_entries(procs)
        if "job_id" in e
        for job_id, tp in (
            zip(e["job_id"], e["traceparent"], strict=True)
            if isinstance(e["job_id"], list)
            else [(e["job_id"], e["traceparent"])]
        )
    ]
    assert {service for service, *_ in mentions} == {"sluice-worker", "sluice-sink"}
    assert {job_id for _, _, job_id, _ in mentions} == {j.job_id for j in jobs}
    for service, msg, job_id, tp in mentions:
        assert trace_id(tp) == trace_id(traces[job_id]), (service, msg, job_id, tp)
    done = Counter(job_id for _, msg, job_id, _ in mentions if msg == "jobs done")
    assert set(done) == {j.job_id for j in jobs}, "every published result is in the access log"

    # Worker a's /metrics counts exactly the results it published.
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    line = next(
        x for x in scraped.splitlines() if x.startswith('sluice_worker_jobs_total{status="succeeded"}')
    )
    assert float(line.split()[-1]) == workers["wa"]

    # The signing secret (either form) never shows in any log line or in /metrics.
    secret_forms = [SECRET, SECRET.removeprefix("whsec_"), decode_secret(SECRET).decode("latin-1")]
    everything = procs.logs() + scraped
    assert not [f for f in secret_forms if f in everything]


def kill_mid_run(
    env: Env, procs: Procs, victim: subprocess.Popen[bytes], n: int = 2000
) -> tuple[list[Job], int, list[Result]]:
    """Submit n jobs, SIGKILL `victim` (worker id "victim") once it has published 100 results, and
    wait for a result of every job: (the jobs, results published before the kill, every result)."""
    jobs, _ = submit_jobs(env, n, None)
    topic = env.settings.results_topic

    def published() -> list[Result]:
        return read_results(env.bootstrap, topic)

    wait_until(lambda: sum(r.worker_id == "victim" for r in published()) >= 100, 120, "100 victim results")
    before_kill = len(published())
    procs.kill(victim)
    wait_until(lambda: len({r.job_id for r in published()}) >= n, 240, "all results")
    return jobs, before_kill, published()


def test_a_worker_killed_mid_run_loses_nothing(env: Env, procs: Procs) -> None:
    # ~100 jobs/s per worker, so the kill lands with jobs in flight and 2000 take a while.
    worker_env = env.environ(SLUICE_WORKER_FAKE_LATENCY_S="0.2", SLUICE_WORKER_MAX_IN_FLIGHT="20")
    victim = procs.start("victim", ["worker", "--worker-id", "victim"], worker_env)
    procs.start("survivor", ["worker", "--worker-id", "survivor"], worker_env)
    jobs, before_kill, results = kill_mid_run(env, procs, victim)
    assert before_kill < 2000, "the kill must land mid-run"
    assert {r.job_id for r in results} == {j.job_id for j in jobs}
    assert all(r.status == "succeeded" for r in results)
    assert Counter(r.worker_id for r in results)["survivor"] > 0


def test_malformed_messages_go_to_the_dlq_and_the_worker_keeps_going(env: Env, procs: Procs) -> None:
    s = env.settings
    bad = {
        b"bad-json": b'{"v": 1, "model": ',
        b"bad-type": orjson.dumps(
            {"v": 1, "job_id": "bad-type", "model": "m", "prompt": "p", "sampling": {"max_tokens": "ten"}}
        ),
        b"bad-version": orjson.dumps({"v": 99, "job_id": "bad-version", "model": "m", "prompt": "p"}),
        b"bad-utf8": b'{"v": 1, "model": "m", "prompt": "\xff\xfe"}',
        b"bad-shape": b"[1, 2, 3]",
        b"missing-model": orjson.dumps({"v": 1, "job_id": "missing-model", "prompt": "p"}),
        b"too-large": orjson.dumps({"v": 1, "job_id": "too-large", "model": "m", "prompt": "x " * 20_000}),
        b"forbidden-hook": orjson.dumps(
            {
                "v": 1,
                "job_id": "forbidden-hook",
                "model": "m",
                "prompt": "p",
                "webhook_url": "https://169.254.169.254/",
            }
        ),
    }
    producer = Producer({"bootstrap.servers": env.bootstrap})
    good = [Job(job_id=f"good-{i}", model="m", prompt=f"fine {i}") for i in range(20)]
    for i, job in enumerate(good):
        producer.produce(
            s.jobs_topic, orjson.dumps(job.model_dump()), job.job_id.encode(), partition=i % env.partitions
        )
        if i % 2 == 0 and i // 2 < len(bad):
            key, value = list(bad.items())[i // 2]
            producer.produce(s.jobs_topic, value, key, partition=i % env.partitions)
    # Odd but valid: a huge header, binary garbage as traceparent, a past deadline, a repeated id.
    odd_headers: list[tuple[str, str | bytes | None]] = [
        ("x-blob", b"\x00" * 200_000),
        ("traceparent", b"\xff\xfe not a trace"),
    ]
    producer.produce(
        s.jobs_topic,
        encode(Job(job_id="odd-headers", model="m", prompt="p")),
        b"odd-headers",
        headers=odd_headers,
    )
    past = Job(job_id="late", model="m", prompt="p", deadline=datetime(2020, 1, 1, tzinfo=UTC))
    producer.produce(s.jobs_topic, encode(past), b"late")
    for _ in range(2):
        producer.produce(s.jobs_topic, encode(Job(job_id="twice", model="m", prompt="same")), b"twice")
    assert producer.flush(10) == 0

    procs.start("worker", ["worker"], env.environ(SLUICE_WORKER_MAX_JOB_BYTES="20000"))
    wait_until(lambda: len(read_topic(env.bootstrap, s.dlq_topic, idle_s=1)) >= len(bad), 60, "DLQ records")
    wait_until(lambda: len(read_results(env.bootstrap, s.results_topic)) >= len(good), 60, "good results")

    dlq = {k: (v, dict(h)) for k, v, h in read_topic(env.bootstrap, s.dlq_topic)}
    assert set(dlq) == set(bad)
    for key, value in bad.items():
        body, headers = dlq[key]
        assert body == value, "the original bytes are kept"
        assert headers["sluice.source.topic"] == s.jobs_topic.encode()
        assert int(headers["sluice.source.offset"]) >= 0
    codes = {k: h["sluice.error.code"].decode() for k, (_, h) in dlq.items()}
    assert codes == {
        b"bad-json": "invalid_json",
        b"bad-type": "invalid_field",
        b"bad-version": "unsupported_schema_version",
        b"bad-utf8": "invalid_json",
        b"bad-shape": "not_an_object",
        b"missing-model": "invalid_field",
        b"too-large": "message_too_large",
        b"forbidden-hook": "forbidden_webhook_url",
    }
    assert b"sampling.max_tokens" in dlq[b"bad-type"][1]["sluice.error.message"]
    results = read_results(env.bootstrap, s.results_topic)
    odd = {"odd-headers", "late", "twice"}
    wait_until(
        lambda: odd <= {r.job_id for r in read_results(env.bootstrap, s.results_topic)}, 60, "odd jobs"
    )
    results = read_results(env.bootstrap, s.results_topic)
    assert {r.job_id for r in results} == {j.job_id for j in good} | odd
    by_id = {r.job_id: r for r in results}
    assert by_id["odd-headers"].status == "succeeded"
    assert by_id["late"].status == "expired" and by_id["late"].error.code == "deadline_exceeded"  # type: ignore[union-attr]
    # A repeated id is answered each time under the same key: compaction keeps one.
    assert [r.status for r in results if r.job_id == "twice"] == ["succeeded", "succeeded"]


def test_sigterm_drains_in_flight_jobs_without_duplicates(env: Env, procs: Procs) -> None:
    # Jobs take 1 s; the drain timeout covers them, so a SIGTERM mid-run must cause no duplicate.
    worker_env = env.environ(
        SLUICE_WORKER_FAKE_LATENCY_S="1.0",
        SLUICE_WORKER_MAX_IN_FLIGHT="10",
        SLUICE_WORKER_DRAIN_TIMEOUT_S="30",
    )
    first = procs.start("first", ["worker", "--worker-id", "first"], worker_env)
    jobs, _ = submit_jobs(env, 60, None)
    topic = env.settings.results_topic
    wait_until(lambda: len(read_results(env.bootstrap, topic)) >= 10, 60, "the first results")
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0
    procs.start("second", ["worker", "--worker-id", "second"], worker_env)
    wait_until(lambda: len({r.job_id for r in read_results(env.bootstrap, topic)}) >= 60, 120, "all results")

    ids = Counter(r.job_id for r in read_results(env.bootstrap, topic))
    assert set(ids) == {j.job_id for j in jobs}
    assert max(ids.values()) == 1, (
        f"duplicates after a graceful drain: {[k for k, v in ids.items() if v > 1]}"
    )


def test_high_priority_jobs_overtake_a_normal_backlog(env: Env, procs: Procs) -> None:
    settings = ProducerSettings(**env.settings.model_dump())
    normal = [Job(job_id=f"n-{i:03d}", model="m", prompt="normal job") for i in range(300)]
    high = [Job(job_id=f"h-{i:03d}", model="m", prompt="urgent job", priority="high") for i in range(20)]
    with JobProducer(settings) as producer:
        for job in [*normal, *high]:  # the high jobs arrive behind a backlog of 300
            producer.submit(job)
    worker_env = env.environ(SLUICE_WORKER_FAKE_LATENCY_S="0.2", SLUICE_WORKER_MAX_IN_FLIGHT="4")
    procs.start("worker", ["worker"], worker_env)
    topic = env.settings.results_topic
    wait_until(lambda: len(read_results(env.bootstrap, topic)) >= 320, 120, "all 320 results")

    started = sorted(read_results(env.bootstrap, topic), key=lambda r: r.started_at or r.finished_at)
    order = [r.job_id for r in started]
    last_high = max(order.index(j.job_id) for j in high)
    normal_before = sum(1 for jid in order[:last_high] if jid.startswith("n-"))
    assert normal_before < 150, f"high-priority jobs waited behind {normal_before} normal jobs"
    assert {r.job_id for r in started} == {j.job_id for j in [*normal, *high]}
