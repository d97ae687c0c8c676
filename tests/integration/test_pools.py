"""Worker pools on the real broker: jobs go to the pool of their model, each pool's workers answer
only their pool's jobs (an idle pool's jobs wait for its workers), and a model no pool serves is
refused at submit."""

from __future__ import annotations

import pytest

from producer import JobProducer
from sluice.errors import ContractError
from sluice.kafka import create_topics
from sluice.settings import ProducerSettings
from sluice.topics import pipeline_specs, pool_topics
from tests.integration.conftest import Env, Procs, read_results, read_topic, wait_until

pytestmark = pytest.mark.integration

POOLS = {"m-small": "small", "m-big": "big"}


def test_each_pool_answers_its_own_models_jobs(env: Env, procs: Procs) -> None:
    settings = env.settings.model_copy(update={"pools": POOLS})
    pool_specs = [s for s in pipeline_specs(settings) if s.name.endswith((".small", ".big"))]
    assert len(pool_specs) == 4
    create_topics(settings, pool_specs)
    environ = env.environ(SLUICE_POOLS="m-small=small,m-big=big")
    procs.start(
        "small", ["worker"], {**environ, "SLUICE_WORKER_POOL": "small", "SLUICE_WORKER_WORKER_ID": "w-small"}
    )

    with JobProducer(ProducerSettings(**settings.model_dump())) as producer:
        for i in range(6):
            model = "m-small" if i % 2 == 0 else "m-big"
            priority = "high" if i < 2 else "normal"
            producer.submit({"job_id": f"j{i}", "model": model, "prompt": f"p {i}", "priority": priority})
        with pytest.raises(ContractError) as caught:
            producer.submit({"job_id": "x", "model": "m-other", "prompt": "p"})
        producer.flush()
    assert caught.value.code == "unknown_model" and caught.value.problems[0].field == "model"

    def answered() -> dict[str, str | None]:
        return {r.job_id: r.worker_id for r in read_results(env.bootstrap, settings.results_topic)}

    wait_until(lambda: len(answered()) >= 3, 60, "the small pool's three jobs")
    assert answered() == {"j0": "w-small", "j2": "w-small", "j4": "w-small"}  # m-big's jobs wait

    procs.start(
        "big", ["worker"], {**environ, "SLUICE_WORKER_POOL": "big", "SLUICE_WORKER_WORKER_ID": "w-big"}
    )
    wait_until(lambda: len(answered()) == 6, 60, "the big pool's three jobs")
    assert answered() == {f"j{i}": "w-small" if i % 2 == 0 else "w-big" for i in range(6)}

    def keys(topic: str) -> set[bytes | None]:
        return {key for key, _, _ in read_topic(env.bootstrap, topic, idle_s=1.0)}

    small, small_high = pool_topics(settings, "small")
    big, big_high = pool_topics(settings, "big")
    assert (keys(small_high), keys(small), keys(big_high), keys(big)) == (
        {b"j0"},
        {b"j2", b"j4"},
        {b"j1"},
        {b"j3", b"j5"},
    )
    assert keys(settings.jobs_topic) == keys(settings.high_topic) == set()  # the default pool: nothing
