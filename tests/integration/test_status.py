"""`sluice status` on the real broker, without Kubernetes: lag per partition, which worker holds
each partition, and the age of the oldest unanswered job."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from producer import JobProducer
from sluice.settings import ProducerSettings
from tests.integration.conftest import Env, Procs, wait_until

pytestmark = pytest.mark.integration


def status(env: Env) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", "status", "--json"],
        env=env.environ(PYTHONFAULTHANDLER="1"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    pools: list[dict[str, object]] = orjson.loads(done.stdout)
    return pools


def test_status_shows_lag_holders_and_the_oldest_waiting_job(env: Env, procs: Procs) -> None:
    with JobProducer(ProducerSettings(**env.settings.model_dump())) as producer:
        for i in range(5):
            producer.submit({"job_id": f"j{i}", "model": "m", "prompt": "p"})
        producer.flush()
    time.sleep(1.5)
    (pool,) = status(env)
    assert (pool["name"], pool["deployment"], pool["lag"]) == ("", None, 5)
    assert isinstance(pool["oldest_s"], float) and pool["oldest_s"] >= 1.0
    partitions = pool["partitions"]
    assert isinstance(partitions, list)
    assert {p["topic"] for p in partitions} == {env.settings.jobs_topic, env.settings.high_topic}
    assert all(p["holder"] is None for p in partitions)  # no worker yet

    # A worker that takes the jobs and holds them (each runs a minute): still lag, now held.
    procs.start(
        "worker",
        ["worker"],
        # A short drain: at teardown it gives the running jobs up instead of waiting 30 s for them.
        env.environ(
            SLUICE_WORKER_WORKER_ID="w-status",
            SLUICE_WORKER_FAKE_LATENCY_S="60",
            SLUICE_WORKER_DRAIN_TIMEOUT_S="1",
        ),
    )

    def held() -> bool:
        (now,) = status(env)
        parts = now["partitions"]
        assert isinstance(parts, list)
        return bool(parts) and all(p["holder"] == "w-status" for p in parts)

    wait_until(held, 60, "the worker to hold every partition")
    (pool,) = status(env)
    assert pool["lag"] == 5  # running, not yet committed
