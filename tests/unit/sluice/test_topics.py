"""Worker pools: which topics a model's jobs go to, which topics exist, and the pool settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluice.errors import ContractError
from sluice.settings import KafkaSettings, WorkerSettings
from sluice.topics import job_topics, pipeline_specs, pool_topics, route, worker_group

POOLS = KafkaSettings(pools={"Qwen/Qwen2.5-0.5B-Instruct": "qwen", "meta-llama/Llama-3.1-8B": "llama"})


def test_without_pools_every_model_goes_to_the_default_topics() -> None:
    plain = KafkaSettings()
    assert route(plain, "anything") == ("inference-jobs", "inference-jobs.high")
    assert job_topics(plain) == ["inference-jobs", "inference-jobs.high"]


def test_with_pools_a_model_goes_to_its_pools_topics_and_an_unserved_one_is_refused() -> None:
    assert route(POOLS, "Qwen/Qwen2.5-0.5B-Instruct") == ("inference-jobs.qwen", "inference-jobs.high.qwen")
    assert route(POOLS, "meta-llama/Llama-3.1-8B") == pool_topics(POOLS, "llama")
    with pytest.raises(ContractError) as caught:
        route(POOLS, "gpt-4o")
    assert caught.value.code == "unknown_model" and caught.value.problems[0].field == "model"
    assert "served: Qwen/Qwen2.5-0.5B-Instruct, meta-llama/Llama-3.1-8B" in str(caught.value)


def test_every_pools_topics_are_created_with_the_default_ones() -> None:
    specs = {
        spec.name: spec.partitions
        for spec in pipeline_specs(POOLS.model_copy(update={"pool_partitions": {"qwen": 5}}))
    }
    assert (
        specs["inference-jobs.qwen"],
        specs["inference-jobs.high.qwen"],
        specs["inference-jobs.llama"],
    ) == (5, 5, 12)
    names = set(specs)
    assert {
        "inference-jobs",
        "inference-jobs.high",
        "inference-jobs.llama",
        "inference-jobs.high.llama",
        "inference-jobs.qwen",
        "inference-jobs.high.qwen",
    } <= names


def test_pools_come_from_the_environment_as_pairs_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_POOLS", "m-a=a,m-b=b")
    assert KafkaSettings().pools == {"m-a": "a", "m-b": "b"}
    monkeypatch.setenv("SLUICE_POOLS", '{"m-a": "a"}')
    assert KafkaSettings().pools == {"m-a": "a"}
    for bad in ("m-a=Big_Pool", "m-a=cancel", "m-a"):
        monkeypatch.setenv("SLUICE_POOLS", bad)
        with pytest.raises(ValidationError, match="SLUICE_POOLS"):
            KafkaSettings()


def test_a_pool_worker_reads_its_pools_topics_in_a_group_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_WORKER_POOL", "qwen")
    worker = WorkerSettings()
    assert worker.group_id == "sluice-workers-qwen" and worker.high_group_id == "sluice-workers-qwen.high"
    monkeypatch.setenv("SLUICE_WORKER_GROUP_ID", "mine")
    assert WorkerSettings().group_id == "mine"
    monkeypatch.setenv("SLUICE_WORKER_POOL", "high")
    with pytest.raises(ValidationError, match="SLUICE_WORKER_POOL='high'"):
        WorkerSettings()


def test_each_jobs_topic_is_read_by_its_pools_group() -> None:
    groups = {topic: worker_group(POOLS, "sluice-workers", topic) for topic in job_topics(POOLS)}
    assert groups == {
        "inference-jobs": "sluice-workers",
        "inference-jobs.high": "sluice-workers.high",
        "inference-jobs.llama": "sluice-workers-llama",
        "inference-jobs.high.llama": "sluice-workers-llama.high",
        "inference-jobs.qwen": "sluice-workers-qwen",
        "inference-jobs.high.qwen": "sluice-workers-qwen.high",
    }
    worker = WorkerSettings(pool="qwen")  # the group a pool's worker joins by default
    assert (worker.group_id, worker.high_group_id) == (
        groups["inference-jobs.qwen"],
        groups["inference-jobs.high.qwen"],
    )
