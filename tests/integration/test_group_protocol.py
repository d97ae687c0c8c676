"""Workers on Kafka's consumer group protocol (KIP-848, SLUICE_GROUP_PROTOCOL=consumer) on the real
broker: the broker assigns their partitions, they share the jobs, a killed worker's partitions move
to the other and nothing is lost, at least once and exactly once alike."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient

from sluice import kafka
from tests.integration.conftest import Env, Procs, read_results, wait_until
from tests.integration.test_pipeline import kill_mid_run, owns_partitions, submit_jobs
from tests.integration.test_status import status

pytestmark = pytest.mark.integration


def consumer_protocol_env(env: Env, **extra: str) -> dict[str, str]:
    """The test's worker environment on the consumer protocol, where the broker owns the session
    timeout and heartbeat (the worker refuses its own there)."""
    environ = env.environ(SLUICE_GROUP_PROTOCOL="consumer", **extra)
    for name in [k for k in environ if k.endswith(("_SESSION_TIMEOUT_MS", "_HEARTBEAT_INTERVAL_MS"))]:
        del environ[name]
    return environ


def set_group_session(env: Env, group: str) -> None:
    """What SLUICE_WORKER_SESSION_TIMEOUT_MS does on the classic protocol, as the group's own
    broker-side configs: a killed member leaves the group after 6 s, not the broker's 45 s."""
    kafka.set_group_session(env.settings, group, 6000, 500)


def group_type(env: Env, group: str) -> ConsumerGroupType:
    admin = AdminClient({"bootstrap.servers": env.bootstrap})
    kind: ConsumerGroupType = admin.describe_consumer_groups([group])[group].result(10).type
    return kind


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_consumer_protocol_workers_share_jobs_and_a_killed_ones_partitions_move(
    env: Env, procs: Procs, exactly_once: bool
) -> None:
    group = f"{env.prefix}-workers"
    for g in (group, f"{group}.high"):
        set_group_session(env, g)
    worker_env = consumer_protocol_env(
        env,
        SLUICE_WORKER_FAKE_LATENCY_S="0.2",  # ~100 jobs/s per worker: the kill lands mid-run
        SLUICE_WORKER_MAX_IN_FLIGHT="20",
        SLUICE_WORKER_EXACTLY_ONCE="1" if exactly_once else "0",
    )
    victim = procs.start("victim", ["worker", "--worker-id", "victim"], worker_env)
    procs.start("survivor", ["worker", "--worker-id", "survivor"], worker_env)
    jobs_topic = env.settings.jobs_topic
    wait_until(
        lambda: (
            owns_partitions(procs, "victim", jobs_topic) and owns_partitions(procs, "survivor", jobs_topic)
        ),
        60,
        "both workers to own partitions of the jobs topic",
    )
    assert group_type(env, group) == ConsumerGroupType.CONSUMER, "the group must be on KIP-848's protocol"
    # `sluice status` reads a KIP-848 group's members as it does a classic group's.
    (pool,) = status(env)
    partitions = pool["partitions"]
    assert isinstance(partitions, list)
    assert {p["holder"] for p in partitions if p["topic"] == jobs_topic} == {"victim", "survivor"}

    jobs, before_kill, results = kill_mid_run(env, procs, victim)
    assert before_kill < 2000, "the kill must land mid-run"
    assert {r.job_id for r in results} == {j.job_id for j in jobs}
    assert all(r.status == "succeeded" for r in results)
    if exactly_once:  # read_committed: an aborted transaction's results are never seen
        assert len(results) == len(jobs), "exactly once: one committed result per job"
    # The survivor took over the victim's partitions: it answered more than its first share.
    assert Counter(r.worker_id for r in results)["survivor"] > len(jobs) - before_kill


def test_workers_stopped_together_both_exit_and_lose_nothing(env: Env, procs: Procs) -> None:
    """SIGTERM to both: the fast one leaves first and the broker moves its partitions to the slow
    one while that one drains; both must exit and every job be answered later. (A worker's close()
    could hang after such a move: 2 of ~11 consumer-protocol runs of bench/rebalance.py, a commit
    from close's revoke callback that never returned. This test did not reproduce that hang on the
    old code in 11 tries; tests/unit/consumer/test_worker.py covers its cause.)"""
    group = f"{env.prefix}-workers"
    for g in (group, f"{group}.high"):
        set_group_session(env, g)
    fast = procs.start("fast", ["worker", "--worker-id", "fast"], consumer_protocol_env(env))
    slow = procs.start(
        "slow",
        ["worker", "--worker-id", "slow"],
        consumer_protocol_env(env, SLUICE_WORKER_FAKE_LATENCY_S="1.2"),
    )
    jobs_topic = env.settings.jobs_topic
    wait_until(
        lambda: owns_partitions(procs, "fast", jobs_topic) and owns_partitions(procs, "slow", jobs_topic),
        60,
        "both workers to own partitions of the jobs topic",
    )
    jobs, _ = submit_jobs(env, 300, None)
    topic = env.settings.results_topic
    wait_until(lambda: len(read_results(env.bootstrap, topic)) >= 20, 60, "the fast worker to answer some")
    fast.terminate()
    slow.terminate()
    assert fast.wait(60) == 0
    assert slow.wait(60) == 0, "the slow worker did not exit after SIGTERM"
    slow_log = next(procs.tmp.glob("slow-*.log")).read_text()
    drained_at = slow_log.index('"drain requested"')
    assert (
        '"partitions assigned","worker_id":"slow","partitions":["' + jobs_topic + ":" in slow_log[drained_at:]
    ), "the scenario needs a partition moved to the slow worker while it drained"

    procs.start("after", ["worker", "--worker-id", "after"], consumer_protocol_env(env))
    wait_until(
        lambda: {r.job_id for r in read_results(env.bootstrap, topic)} == {j.job_id for j in jobs},
        120,
        "every job answered once the group has a worker again",
    )
