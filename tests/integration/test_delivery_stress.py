"""The shape that once stalled webhook delivery (issue 12, A6), run several times: 2,000 jobs through
two workers and the sink to a receiver that answers 500 to its first 25 requests and 200 after.
The breaker opens, deliveries are deferred and retried through the tiers, a second sink joins (a
rebalance), the machine is kept busy, and every delivery the schedule does not hold back arrives.

The schedule is 0, 1 s, 600 s: a delivery refused twice legitimately waits 600 s, and before the fix
deliveries due in seconds that were produced behind it to the same tier partition waited with it.
One connection per endpoint and a 2 s breaker cooldown make that likely: the first refused
deliveries cycle through the 1 s tier and come back as the breaker's probes, so some are refused
a second time while deferrals (2 s, which went to the 600 s tier) queue behind them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator

import pytest

from producer import JobProducer
from results_sink import decode_secret, start_receiver
from sluice.settings import ProducerSettings
from tests.integration.conftest import SECRET, Env, Procs, wait_until

JOBS = 2000


def _spin() -> None:
    while True:
        pass


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """One process spinning per core: the workers, the sink and the broker compete for CPU."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 2)]
    for p in spinners:
        p.start()
    yield
    for p in spinners:
        p.kill()
        p.join()


@pytest.mark.parametrize("run", range(2))
def test_a_receiver_failing_its_first_requests_gets_every_owed_delivery(
    run: int, env: Env, procs: Procs, busy_machine: None
) -> None:
    receiver = start_receiver(decode_secret(SECRET))
    receiver.fail_first = 25
    environ = env.environ(
        SLUICE_SINK_RETRY_SCHEDULE="0,1,600",
        SLUICE_SINK_BREAKER_FAILURES="5",
        SLUICE_SINK_BREAKER_COOLDOWN_S="2",
        SLUICE_SINK_ENDPOINT_CONCURRENCY="1",
        SLUICE_WORKER_FAKE_LATENCY_S="0.002",
    )
    for name in ("worker-a", "worker-b"):
        procs.start(name, ["worker", "--worker-id", name], environ)
    procs.start("sink-a", ["sink"], environ)
    settings = ProducerSettings(**env.settings.model_dump())
    with JobProducer(settings) as producer:
        futures = [
            producer.submit(
                {"job_id": f"s{run}-{i}", "model": "m", "prompt": f"p {i}", "webhook_url": receiver.url}
            )
            for i in range(JOBS)
        ]
        for future in futures:
            future.result(timeout=60)
    wait_until(lambda: receiver.rejected >= 25, 120, "the receiver's 25 refusals")
    procs.start("sink-b", ["sink"], environ)  # joins mid-run: the sink groups rebalance
    ids = {f"s{run}-{i}" for i in range(JOBS)}

    def owed() -> set[str]:  # refused twice: the schedule holds it 600 s; everything else is owed now
        with receiver.lock:
            return {j for j in ids if receiver.rejected_ids[j] < 2} - set(receiver.counts)

    wait_until(lambda: not owed(), 240, "every delivery not held back by the schedule")
    assert receiver.rejected == 25 and receiver.bad_signatures == 0
    assert len(set(receiver.counts)) >= JOBS - sum(1 for n in receiver.rejected_ids.values() if n >= 2)
    receiver.stop()
