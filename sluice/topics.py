"""Every topic Sluice uses, by name and spec, in one place.

    topic                        cleanup             partitions          holds
    <jobs_topic>                 delete              jobs_partitions     jobs, normal priority
    <high_topic>                 delete              jobs_partitions     jobs with priority "high"
    <jobs_topic>.<pool>          delete              jobs_partitions     a worker pool's jobs (pools)
    <high_topic>.<pool>          delete              jobs_partitions     a worker pool's high jobs
    <results_topic>              compact             results_partitions  results, keyed by job id
    <dlq_topic>                  delete, 14 days     1                   jobs that cannot be run
    <jobs_topic>.cancel          compact+delete 7 d  1                   job ids asked to be cancelled
    <deliveries>.retry.<d>s      delete, >= 1 week   results_partitions  webhook retries waiting d s
    <deliveries>.dlq             delete, 28 days     1                   webhook deliveries given up
    <deliveries>.endpoints       compact             1                   endpoints disabled by 410
    <api_keys_topic>             compact             1                   the gateway's API keys, hashed
    <files_topic>                compact             1                   uploaded files: what each is
    <file_chunks_topic>          compact             1                   uploaded files: their bytes
    <batches_topic>              compact             1                   batches: one record each
    <batches_topic>.work         delete, 7 days      jobs_partitions     batches shared out to gateways
    <batches_topic>.events       delete, 7 days      1                   batch.completed etc., for webhooks

Names come from KafkaSettings (`<deliveries>` is `deliveries_topic`); the retry tiers are the
distinct positive waits of the sink's retry schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sluice.errors import ContractError, FieldProblem
from sluice.settings import KafkaSettings

__all__ = [
    "TopicSpec",
    "batch_work_topic",
    "cancels_topic",
    "delivery_dlq_topic",
    "delivery_specs",
    "endpoints_topic",
    "events_topic",
    "gateway_specs",
    "job_topics",
    "pipeline_specs",
    "pool_topics",
    "retry_tiers",
    "route",
    "tier_topic",
    "worker_group",
]

_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """A topic Sluice needs, with the configuration it must have."""

    name: str
    partitions: int
    config: Mapping[str, str]


def pool_topics(settings: KafkaSettings, pool: str | None) -> tuple[str, str]:
    """A worker pool's (jobs, high) topics: `<jobs_topic>.<pool>` and `<high_topic>.<pool>`; the
    default pool's (jobs_topic, high_topic) for None."""
    if pool is None:
        return settings.jobs_topic, settings.high_topic
    high = f"{settings.high_topic}.{pool}" if settings.high_topic else ""  # "": no high topic
    return f"{settings.jobs_topic}.{pool}", high


def route(settings: KafkaSettings, model: str) -> tuple[str, str]:
    """The (jobs, high) topics of the pool that serves `model`; a model no pool serves is refused
    at submit, naming the models that are served."""
    if not settings.pools:
        return pool_topics(settings, None)
    pool = settings.pools.get(model)
    if pool is None:
        served = ", ".join(sorted(settings.pools))
        why = f"no worker pool serves {model!r} (SLUICE_POOLS); served: {served}"
        raise ContractError("unknown_model", [FieldProblem("model", why)])
    return pool_topics(settings, pool)


def worker_group(settings: KafkaSettings, base: str, topic: str) -> str:
    """The worker consumer group that reads `topic`, where `base` is the default pool's group:
    `<base>-<pool>` for a pool's jobs topic, and `.high` after either for a high topic."""
    for pool in [None, *sorted(set(settings.pools.values()))]:
        jobs, high = pool_topics(settings, pool)
        group = base if pool is None else f"{base}-{pool}"
        if topic == jobs:
            return group
        if topic == high:
            return f"{group}.high"
    return base


def job_topics(settings: KafkaSettings) -> list[str]:
    """Every jobs topic: the default pool's and each configured pool's."""
    pools = [None, *sorted(set(settings.pools.values()))]
    return [topic for pool in pools for topic in pool_topics(settings, pool) if topic]


def pipeline_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """Jobs (normal and high priority, per pool), compacted results keyed by job id, the jobs' DLQ."""
    delete = {"cleanup.policy": "delete"}
    pools = [None, *sorted(set(settings.pools.values()))]
    return [
        *(
            TopicSpec(topic, settings.pool_partitions.get(pool or "", settings.jobs_partitions), delete)
            for pool in pools
            for topic in pool_topics(settings, pool)
            if topic
        ),
        TopicSpec(
            settings.results_topic,
            settings.results_partitions,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
        ),
        TopicSpec(settings.dlq_topic, 1, {"cleanup.policy": "delete", "retention.ms": str(14 * _DAY_MS)}),
        # Every worker reads all of it: one partition; a week covers any job still waiting.
        TopicSpec(
            cancels_topic(settings),
            1,
            {"cleanup.policy": "compact,delete", "retention.ms": str(7 * _DAY_MS)},
        ),
    ]


def cancels_topic(settings: KafkaSettings) -> str:
    return f"{settings.jobs_topic}.cancel"


def retry_tiers(schedule: Sequence[float]) -> tuple[float, ...]:
    """The distinct positive waits of a retry schedule, ascending; at least one, for deferrals."""
    return tuple(sorted({d for d in schedule[1:] if d > 0})) or (1.0,)


def tier_topic(deliveries: str, tier: float) -> str:
    return f"{deliveries}.retry.{tier:g}s"


def delivery_dlq_topic(deliveries: str) -> str:
    return f"{deliveries}.dlq"


def endpoints_topic(deliveries: str) -> str:
    return f"{deliveries}.endpoints"


def delivery_specs(settings: KafkaSettings, schedule: Sequence[float]) -> list[TopicSpec]:
    """The retry tiers (kept a week, or twice their delay), the delivery DLQ, disabled endpoints."""
    prefix = settings.deliveries_topic
    specs = [
        TopicSpec(
            tier_topic(prefix, tier),
            settings.results_partitions,
            {"cleanup.policy": "delete", "retention.ms": str(max(7 * _DAY_MS, int(2000 * tier)))},
        )
        for tier in retry_tiers(schedule)
    ]
    specs.append(
        TopicSpec(
            delivery_dlq_topic(prefix), 1, {"cleanup.policy": "delete", "retention.ms": str(28 * _DAY_MS)}
        )
    )
    # Compacted: one record per URL survives, and a tombstone (enabled again) removes it for good.
    specs.append(TopicSpec(endpoints_topic(prefix), 1, {"cleanup.policy": "compact"}))
    specs.append(events_spec(settings))  # the sink delivers them; the gateway writes them
    return specs


def events_topic(settings: KafkaSettings) -> str:
    return f"{settings.batches_topic}.events"


def events_spec(settings: KafkaSettings) -> TopicSpec:
    return TopicSpec(
        events_topic(settings), 1, {"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)}
    )


def gateway_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """The gateway's own: API keys and uploaded files (what each is, and its bytes in chunks of at
    most 512 KiB, under the broker's default record size limit)."""
    compact = {"cleanup.policy": "compact"}
    return [
        TopicSpec(settings.api_keys_topic, 1, compact),
        TopicSpec(settings.files_topic, 1, compact),
        TopicSpec(settings.file_chunks_topic, 1, compact),
        TopicSpec(settings.batches_topic, 1, compact),
        TopicSpec(
            batch_work_topic(settings),
            settings.jobs_partitions,
            {"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)},
        ),
        events_spec(settings),
    ]


def batch_work_topic(settings: KafkaSettings) -> str:
    return f"{settings.batches_topic}.work"
