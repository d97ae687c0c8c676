"""`sluice status`: each worker pool's pods and autoscaler, its lag per partition, which worker
holds each partition, and how long the oldest unanswered job has waited.

Where the pools come from: with `--namespace`, from Kubernetes (the kubernetes client, on the
local kubeconfig or in-cluster): the chart's ScaledObjects name each pool's topics and consumer
groups, their Deployments give pods ready/desired and KEDA's HPAs the metric against its target.
Without it, from the settings (SLUICE_POOLS, SLUICE_WORKER_GROUP_ID) and the Kubernetes columns stay
empty. Lag, holders and ages are always read from Kafka: committed offsets by a consumer of each group
that never joins it, group members from the admin API, and each lagging partition's first
unanswered record for its timestamp.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from sluice.kafka import reader_config, retrying
from sluice.settings import KafkaSettings
from sluice.topics import pool_topics, worker_group

__all__ = ["PartitionStatus", "PoolStatus", "collect", "table"]


@dataclass
class PartitionStatus:
    topic: str
    partition: int
    group: str
    committed: int | None  # None: the group never committed here
    end: int
    lag: int
    holder: str | None  # the client id of the group member assigned it (the worker id)
    oldest_s: float | None  # age of the first unanswered job, if any


@dataclass
class PoolStatus:
    name: str
    deployment: str | None = None
    ready: int | None = None
    desired: int | None = None
    metric: list[dict[str, Any]] = field(default_factory=list)  # the HPA's metrics: current vs target
    partitions: list[PartitionStatus] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def oldest_s(self) -> float | None:
        ages = [p.oldest_s for p in self.partitions if p.oldest_s is not None]
        return max(ages) if ages else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"lag": self.lag, "oldest_s": self.oldest_s}


def collect(settings: KafkaSettings, group: str, namespace: str | None) -> list[PoolStatus]:
    """Every pool's status (see the module docstring)."""
    pools = _kube_pools(namespace) if namespace else _settings_pools(settings, group)
    admin = AdminClient(settings.client_config())
    reader = Consumer(reader_config(settings, "sluice-status", **{"enable.partition.eof": False}))
    try:
        for pool, watched in pools:
            for topic, group_id in watched:
                pool.partitions += _partitions(settings, admin, reader, topic, group_id)
    finally:
        reader.close()
    return [pool for pool, _ in pools]


def _settings_pools(settings: KafkaSettings, group: str) -> list[tuple[PoolStatus, list[tuple[str, str]]]]:
    names: list[str | None] = [*sorted(set(settings.pools.values()))] or [None]
    found = []
    for name in names:
        topics = [t for t in pool_topics(settings, name) if t]
        found.append((PoolStatus(name or ""), [(t, worker_group(settings, group, t)) for t in topics]))
    return found


def _kube_pools(namespace: str) -> list[tuple[PoolStatus, list[tuple[str, str]]]]:
    from kubernetes import client, config

    kubeconfig: Any = config.load_kube_config  # untyped in the client
    incluster: Any = config.load_incluster_config
    try:
        kubeconfig()
    except config.ConfigException:
        incluster()
    apps: Any = client.AppsV1Api()
    hpas: Any = client.AutoscalingV2Api()
    custom: Any = client.CustomObjectsApi()
    scaled = custom.list_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects")["items"]
    found = []
    for so in scaled:
        target = so["spec"]["scaleTargetRef"]["name"]
        deployment = apps.read_namespaced_deployment(target, namespace)
        labels = deployment.metadata.labels or {}
        if labels.get("app.kubernetes.io/component") != "worker":
            continue
        pool = PoolStatus(
            labels.get("sluice.dev/pool", ""),
            target,
            deployment.status.ready_replicas or 0,
            deployment.spec.replicas,
        )
        hpa_name = (so.get("status") or {}).get("hpaName") or f"keda-hpa-{so['metadata']['name']}"
        try:
            hpa = hpas.read_namespaced_horizontal_pod_autoscaler(hpa_name, namespace)
        except client.ApiException:
            hpa = None
        if hpa is not None:
            pool.metric = _metrics(hpa)
        watched = [
            (t["metadata"]["topic"], t["metadata"]["consumerGroup"])
            for t in so["spec"]["triggers"]
            if t.get("type") == "kafka"
        ]
        found.append((pool, watched))
    return found


def _metrics(hpa: Any) -> list[dict[str, Any]]:
    """Each external metric of a KEDA HPA: its name, current average value and target."""
    targets = {
        m.external.metric.name: m.external.target.average_value
        for m in hpa.spec.metrics or []
        if m.type == "External"
    }
    current = {
        m.external.metric.name: m.external.current.average_value
        for m in (hpa.status.current_metrics or [])
        if m.type == "External"
    }
    return [
        {"metric": n, "current": str(current[n]) if current.get(n) is not None else "-", "target": str(t)}
        for n, t in targets.items()
    ]


def _committed(settings: KafkaSettings, group: str, parts: list[TopicPartition]) -> dict[int, int]:
    """The group's committed offsets, read by a consumer of that group that never joins it.
    Not AdminClient.list_consumer_group_offsets: with a coordinator still loading, librdkafka
    2.16 crashed the process there (SIGSEGV, reproduced on a fresh broker; librdkafka's
    OffsetFetch handling, as in confluent-kafka-javascript#374)."""
    offsets = Consumer(reader_config(settings, group, **{"enable.partition.eof": False}))
    try:
        # A group coordinator that is still loading answers COORDINATOR_LOAD_IN_PROGRESS: ask again.
        found = retrying(lambda: offsets.committed(parts, timeout=10), f"committed offsets of {group}")
    finally:
        offsets.close()
    return {tp.partition: tp.offset for tp in found}


def _partitions(
    settings: KafkaSettings, admin: AdminClient, reader: Any, topic: str, group: str
) -> list[PartitionStatus]:
    meta = reader.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    committed = _committed(settings, group, parts)
    described = retrying(
        lambda: admin.describe_consumer_groups([group])[group].result(timeout=10), f"members of {group}"
    )
    holders = {
        tp.partition: member.client_id
        for member in described.members
        for tp in (member.assignment.topic_partitions if member.assignment else [])
        if tp.topic == topic
    }
    rows = []
    for tp in parts:
        low, high = reader.get_watermark_offsets(tp, timeout=10)
        done = committed.get(tp.partition, -1)
        start = done if done is not None and done >= 0 else low
        rows.append(
            PartitionStatus(
                topic,
                tp.partition,
                group,
                done if done is not None and done >= 0 else None,
                high,
                max(0, high - start),
                holders.get(tp.partition),
                None,
            )
        )
    _ages(reader, [r for r in rows if r.lag > 0])
    return rows


def _ages(reader: Any, lagging: list[PartitionStatus]) -> None:
    """The age of each lagging partition's first unanswered record (its Kafka timestamp)."""
    if not lagging:
        return
    waiting = {(r.topic, r.partition): r for r in lagging}
    starts = [TopicPartition(r.topic, r.partition, r.end - r.lag) for r in lagging]
    reader.assign(starts)
    deadline = time.monotonic() + 10
    while waiting and time.monotonic() < deadline:
        for msg in reader.consume(len(waiting), 1.0):
            row = waiting.pop((msg.topic(), msg.partition()), None)
            if row is not None and msg.error() is None:
                row.oldest_s = max(0.0, time.time() - msg.timestamp()[1] / 1000)
    reader.unassign()


def table(pools: list[PoolStatus]) -> str:
    """A table for people: one line per pool, then one per partition."""

    def age(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        minutes, s = divmod(int(seconds), 60)
        return f"{minutes}m{s:02d}s" if minutes else f"{s}s"

    lines = [f"{'POOL':<12} {'DEPLOYMENT':<28} {'READY':>7} {'HPA METRIC / TARGET':<24} {'LAG':>8} OLDEST"]
    for pool in pools:
        ready = "-" if pool.desired is None else f"{pool.ready}/{pool.desired}"
        metric = ", ".join(f"{m['current']}/{m['target']}" for m in pool.metric) or "-"
        lines.append(
            f"{pool.name or '(default)':<12} {pool.deployment or '-':<28} {ready:>7} {metric:<24} "
            f"{pool.lag:>8} {age(pool.oldest_s)}"
        )
    lines.append("")
    lines.append(f"{'TOPIC:PARTITION':<40} {'GROUP':<32} {'LAG':>8} {'HELD BY':<28} OLDEST")
    for pool in pools:
        for p in pool.partitions:
            lines.append(
                f"{f'{p.topic}:{p.partition}':<40} {p.group:<32} {p.lag:>8} {p.holder or '-':<28} "
                f"{age(p.oldest_s)}"
            )
    return "\n".join(lines)
