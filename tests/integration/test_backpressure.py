"""Backpressure at submit on the real broker: refused with a typed error while the workers lag
behind by more than the limit, accepted again once they caught up."""

from __future__ import annotations

import pytest

from producer import JobProducer
from sluice.contract import Job
from sluice.errors import BackpressureError
from sluice.settings import ProducerSettings
from tests.integration.conftest import Env, Procs, wait_until


def test_submit_refuses_above_the_lag_limit_and_accepts_after_catch_up(env: Env, procs: Procs) -> None:
    environ = env.environ()
    base = env.settings.model_dump()
    with JobProducer(ProducerSettings(**base)) as unguarded:
        for i in range(25):
            unguarded.submit(Job(job_id=f"backlog-{i}", model="m", prompt="hi"))
    guarded_settings = ProducerSettings(
        **base, max_lag=10, lag_check_interval_s=0, worker_group_id=environ["SLUICE_WORKER_GROUP_ID"]
    )
    with JobProducer(guarded_settings) as guarded:
        with pytest.raises(BackpressureError) as refused:
            guarded.submit(Job(job_id="refused", model="m", prompt="hi"))
        assert (refused.value.lag, refused.value.limit, refused.value.code) == (25, 10, "backpressure")
        assert "retry later" in str(refused.value)
        procs.start("worker", ["worker"], environ)
        wait_until(
            lambda: guarded._lag is not None and guarded._lag.lag(env.settings.jobs_topic) == 0,
            60,
            "catch-up",
        )
        guarded.submit(Job(job_id="accepted", model="m", prompt="hi")).result(timeout=30)
