"""Webhook delivery on the real broker: results produced to Kafka -> `sluice sink` process -> local
receivers. Signatures are checked with tests/webhook_spec.py, written from the spec (not the
sink's signer)."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from results_sink import Receiver, decode_secret, start_receiver
from results_sink.deliveries import decode_delivery
from results_sink.dlq import DlqFilter, Kind, list_dlq
from sluice.contract import Job, Result, encode
from sluice.errors import KafkaOperationError
from sluice.settings import SinkSettings
from tests.integration.conftest import SECRET, Env, Procs, read_topic, wait_until
from tests.webhook_spec import spec_valid


def produce_results(env: Env, urls: list[str], prefix: str) -> list[str]:
    producer = Producer({"bootstrap.servers": env.bootstrap})
    ids = []
    for i, url in enumerate(urls):
        job_id = f"{prefix}-{i}"
        ids.append(job_id)
        value = encode(
            Result(job_id=job_id, status="succeeded", model="m", output=f"out {i}", webhook_url=url)
        )
        producer.produce(env.settings.results_topic, value, job_id.encode())
    assert producer.flush(10) == 0
    return ids


def sink_settings(env: Env, environ: dict[str, str]) -> SinkSettings:
    import os

    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        return SinkSettings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def committed_total(env: Env, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": env.bootstrap, "group.id": group})
    parts = [TopicPartition(topic, p) for p in range(env.partitions)]
    committed = consumer.committed(parts, timeout=10)
    consumer.close()
    return sum(max(0, p.offset) for p in committed)


def dlq_size(settings: SinkSettings, kind: Kind) -> int:
    try:
        return len(list_dlq(settings, kind))
    except KafkaOperationError:  # not created yet: the sink creates its topics as it starts
        return -1


def all_signed_per_spec(receiver: Receiver) -> bool:
    return all(spec_valid(SECRET, headers, body) for headers, body in receiver.raw.values())


def test_a_failing_endpoint_recovers_and_never_delays_a_healthy_one(env: Env, procs: Procs) -> None:
    flaky, healthy = start_receiver(decode_secret(SECRET)), start_receiver(decode_secret(SECRET))
    flaky.fail_status = 500
    environ = env.environ(SLUICE_SINK_RETRY_SCHEDULE="0,1,1,2,2,2,2,2,2,2,2,2")
    procs.start("sink", ["sink"], environ)
    n = 150
    urls = [u for _ in range(n) for u in (flaky.url, healthy.url)]
    ids = produce_results(env, urls, "r")
    healthy_ids, flaky_ids = set(ids[1::2]), set(ids[0::2])

    wait_until(lambda: set(healthy.counts) == healthy_ids, 90, "every healthy delivery")
    # Every healthy delivery arrived while the other endpoint was still failing every request.
    assert not flaky.counts and flaky.rejected >= 1
    flaky.fail_status = None
    recovered_at = time.time()
    wait_until(lambda: set(flaky.counts) == flaky_ids, 120, "every flaky delivery after it recovered")

    assert max(healthy.first_received.values()) < recovered_at
    assert all_signed_per_spec(flaky) and all_signed_per_spec(healthy)
    assert {h["webhook-id"] for h, _ in flaky.raw.values()} == flaky_ids
    assert sum(healthy.counts.values()) == n  # the healthy endpoint got each exactly once
    s = sink_settings(env, environ)
    retried = [
        decode_delivery(v)
        for t in ("1s", "2s")
        for _, v, _ in read_topic(env.bootstrap, f"{s.deliveries_topic}.retry.{t}")
    ]
    assert retried and {d.job_id for d in retried} <= flaky_ids
    assert all(d.attempt >= 2 or d.history == [] for d in retried)  # a retry, or a breaker deferral


def test_the_sink_killed_mid_retry_resumes_its_retries(env: Env, procs: Procs) -> None:
    receiver = start_receiver(decode_secret(SECRET))
    receiver.fail_status = 503
    environ = env.environ(SLUICE_SINK_RETRY_SCHEDULE="0,3,3,3,3,3,3,3", SLUICE_SINK_BREAKER_FAILURES="1000")
    first = procs.start("sink", ["sink"], environ)
    ids = produce_results(env, [receiver.url] * 40, "k")
    group = environ["SLUICE_SINK_GROUP_ID"]
    # Every result settled into a retry tier: the results topic is fully committed, nothing delivered.
    wait_until(lambda: committed_total(env, group, env.settings.results_topic) == 40, 60, "results settled")
    assert not receiver.counts and receiver.rejected >= 40
    procs.kill(first)
    first.wait(10)
    receiver.fail_status = None
    restarted_at = time.time()
    procs.start("sink", ["sink"], environ)
    wait_until(lambda: set(receiver.counts) == set(ids), 90, "every retry delivered by the new sink")
    assert min(receiver.first_received.values()) > restarted_at
    assert all_signed_per_spec(receiver)


def test_dead_letters_are_listed_and_replay_redelivers(env: Env, procs: Procs) -> None:
    receiver, gone = start_receiver(decode_secret(SECRET)), start_receiver(decode_secret(SECRET))
    receiver.fail_status, gone.fail_status = 500, 410
    environ = env.environ(SLUICE_SINK_RETRY_SCHEDULE="0,0.5")
    procs.start("sink", ["sink"], environ)
    ids = produce_results(env, [receiver.url] * 4, "d")
    gone_ids = produce_results(env, [gone.url] * 2, "g")
    s = sink_settings(env, environ)
    wait_until(lambda: dlq_size(s, "deliveries") == 6, 60, "six dead letters")
    entries = {e.job_id: e for e in list_dlq(s, "deliveries")}
    assert {entries[i].reason for i in ids} == {"attempts_exhausted"}
    assert {entries[i].attempts for i in ids} == {2}
    assert {entries[i].reason for i in gone_ids} <= {"endpoint_gone", "endpoint_disabled"}
    assert [e.job_id for e in list_dlq(s, "deliveries", DlqFilter(frozenset({ids[0]})))] == [ids[0]]
    assert len(list_dlq(s, "deliveries", DlqFilter(endpoint=gone.url))) == 2

    receiver.fail_status = None
    cli = [sys.executable, "-m", "sluice.cli", "dlq", "replay", "--kind", "deliveries"]
    out = subprocess.run([*cli, "--job-id", ids[0]], env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "replayed 1 deliveries" in out.stderr
    wait_until(lambda: set(receiver.counts) == {ids[0]}, 60, "the replayed delivery")
    refused = subprocess.run(cli, env=environ, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "needs a filter" in refused.stderr
    subprocess.run(
        [*cli, "--endpoint", receiver.url], env=environ, check=True, capture_output=True, timeout=60
    )
    wait_until(lambda: set(receiver.counts) == set(ids), 60, "every replayed delivery")
    assert all_signed_per_spec(receiver)


def test_job_dead_letters_replay_to_their_source_topic(env: Env, procs: Procs) -> None:
    environ = env.environ()
    procs.start("worker", ["worker"], environ)
    s = env.settings
    producer = Producer({"bootstrap.servers": env.bootstrap})
    producer.produce(s.jobs_topic, b"{not json", b"bad-1")
    good = Job(job_id="ok-1", model="m", prompt="hello there")
    producer.produce(s.jobs_topic, encode(good), b"ok-1")
    assert producer.flush(10) == 0
    sink = sink_settings(env, environ)
    wait_until(lambda: dlq_size(sink, "jobs") == 1, 60, "the bad job in the job DLQ")
    (entry,) = list_dlq(sink, "jobs")
    assert (entry.job_id, entry.reason) == ("bad-1", "invalid_json")
    cmd = [sys.executable, "-m", "sluice.cli", "dlq", "replay", "--kind", "jobs", "--job-id", "bad-1"]
    subprocess.run(cmd, env=environ, check=True, capture_output=True, timeout=60)
    replayed = [r for r in read_topic(env.bootstrap, s.jobs_topic) if r[0] == b"bad-1"]
    assert len(replayed) == 2 and replayed[1][1] == b"{not json"
    assert any(k == "sluice.replayed.from" for k, _ in replayed[1][2])
    # Still malformed, so the worker dead-letters it again: replay appends, never loses.
    wait_until(lambda: dlq_size(sink, "jobs") == 2, 60, "the replayed job dead-lettered again")


def test_an_endpoint_gone_stays_disabled_across_a_restart_until_enabled(env: Env, procs: Procs) -> None:
    gone = start_receiver(decode_secret(SECRET))
    gone.fail_status = 410
    environ = env.environ()
    first = procs.start("sink", ["sink"], environ)
    (first_id,) = produce_results(env, [gone.url], "gone-a")
    s = sink_settings(env, environ)
    wait_until(lambda: dlq_size(s, "deliveries") == 1, 60, "the 410 dead-lettered")
    first.send_signal(signal.SIGTERM)
    first.wait(30)
    cli = [sys.executable, "-m", "sluice.cli", "endpoints"]
    listed = subprocess.run([*cli, "list"], env=environ, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [orjson.loads(line)["url"] for line in listed.stdout.splitlines()] == [gone.url]

    # A new sink knows without asking: no request, the delivery dead-lettered as endpoint_disabled.
    procs.start("sink", ["sink"], environ)
    (second_id,) = produce_results(env, [gone.url], "gone-b")

    def dead_letters() -> list[tuple[str | None, str]]:
        return [(e.job_id, e.reason) for e in list_dlq(s, "deliveries")]

    wait_until(lambda: second_id in {j for j, _ in dead_letters()}, 60, "the second delivery dead-lettered")
    # (The first result may come round again if its offset was not committed before the stop: it is
    # then dead-lettered again as disabled, also without a request.)
    assert {r for j, r in dead_letters() if j == second_id} == {"endpoint_disabled"}
    assert dead_letters()[0] == (first_id, "endpoint_gone")
    assert gone.rejected == 1 and not gone.counts

    # Enabled again while that sink runs: it reads the tombstone and delivers again.
    gone.fail_status = None
    enabled = subprocess.run(
        [*cli, "enable", gone.url], env=environ, capture_output=True, text=True, timeout=60
    )
    assert enabled.returncode == 0, enabled.stderr
    again = subprocess.run(
        [*cli, "enable", gone.url], env=environ, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "is not disabled" in again.stderr
    # The sink reads the endpoints topic about once a second: results produced before it has read
    # the tombstone are still dead-lettered, so send one every 2 s until one is delivered.
    polls = itertools.count()

    def one_delivered() -> bool:
        if next(polls) % 8 == 0:  # wait_until asks every 0.25 s
            produce_results(env, [gone.url], f"gone-c{time.monotonic_ns()}")
        return bool(gone.counts)

    wait_until(one_delivered, 60, "a delivery after enable")
    assert all(job_id.startswith("gone-c") for job_id in gone.counts) and all_signed_per_spec(gone)
