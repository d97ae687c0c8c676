"""The chart on a live control plane (tests/k8s/cluster.py: real API server, controller manager,
scheduler and KEDA; kwok plays the kubelet, so pods run without containers): `helm install --wait`,
KEDA's HPA scaling the workers on the real lag of the local broker to the count the chart's formula
gives, the high topic's lag, scale-down to zero and back, `helm upgrade` and `helm uninstall`
leaving the topics, and the live PodDisruptionBudget, probes and grace period.

The tests run in file order on one release: each starts where the previous one left it."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from producer import JobProducer
from sluice.kafka import create_topics
from sluice.settings import KafkaSettings, ProducerSettings
from sluice.topics import TopicSpec, pipeline_specs
from tests.helm.tools import CHART, helm
from tests.k8s.cluster import Cluster, running

pytestmark = pytest.mark.timeout(600)

RELEASE, NAMESPACE = "live", "sluice"
PARTITIONS, MAX_REPLICAS = 8, 6
LAG, HIGH_LAG = 10, 5  # target lag per worker on the normal and the high topic


class Live:
    """The release under test, its topics and clients."""

    def __init__(self, cluster: Cluster, bootstrap: str, values: Path) -> None:
        from kubernetes import client

        self.cluster, self.bootstrap, self.values = cluster, bootstrap, values
        api = cluster.api()
        # Any: the client's models make every field Optional; a missing one fails the test anyway.
        self.apps: Any = client.AppsV1Api(api)
        self.core: Any = client.CoreV1Api(api)
        self.autoscaling: Any = client.AutoscalingV2Api(api)
        self.policy: Any = client.PolicyV1Api(api)
        self.batch: Any = client.BatchV1Api(api)
        self.prefix = f"live-{uuid.uuid4().hex[:8]}"
        self.topics = {
            "jobs": f"{self.prefix}-jobs",
            "high": f"{self.prefix}-jobs.high",
            "results": f"{self.prefix}-results",
            "dlq": f"{self.prefix}-dlq",
            "deliveries": f"{self.prefix}-deliveries",
        }
        self.group = f"{RELEASE}-sluice-workers"

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(helm()), *args, "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", NAMESPACE]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)

    def produce(self, topic: str, n: int) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for i in range(n):
            producer.produce(topic, b"{}", f"{topic}-{i}-{uuid.uuid4().hex}".encode())
        assert producer.flush(30) == 0

    def drain(self) -> None:
        """Commit both groups at the end of their topics, as workers that answered everything would."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for topic, group in ((self.topics["jobs"], self.group), (self.topics["high"], f"{self.group}.high")):
            consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
            ends = [
                TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1])
                for p in range(PARTITIONS)
            ]
            consumer.commit(offsets=ends, asynchronous=False)
            consumer.close()
        del admin

    def topic_ids(self) -> dict[str, str]:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        meta = admin.list_topics(timeout=10)
        return {name: str(t.topic_id) if hasattr(t, "topic_id") else name for name, t in meta.topics.items()}

    def replicas(self, deployment: str = f"{RELEASE}-sluice-worker") -> int:
        scale = self.apps.read_namespaced_deployment_scale(deployment, NAMESPACE)
        return int(scale.spec.replicas or 0)

    def until(self, what: str, check: Callable[[], bool], timeout_s: float = 180) -> float:
        """Seconds until `check()` holds; fails naming `what` and the HPA's last status otherwise."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if check():
                return time.monotonic() - start
            time.sleep(1)
        raise AssertionError(
            f"{what}: not within {timeout_s:.0f} s; replicas {self.replicas()}, HPA {self.hpa()}"
        )

    def hpa(self) -> Any:
        found = self.autoscaling.list_namespaced_horizontal_pod_autoscaler(NAMESPACE).items
        return found[0].status if found else None


def expected(lag: int, high_lag: int) -> int:
    """The chart's documented formula: ceil(lag / target) per topic, the larger of the two, no more
    than maxReplicas and (idle consumers not allowed) no more than the partitions."""
    return min(max(math.ceil(lag / LAG), math.ceil(high_lag / HIGH_LAG)), MAX_REPLICAS, PARTITIONS)


@pytest.fixture(scope="module")
def live(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("k8s")
    with running(work) as cluster:
        values = work / "values.yaml"
        yield Live(cluster, bootstrap, values)


def test_helm_install_waits_for_the_topics_job_and_ready_deployments(live: Live) -> None:
    settings = KafkaSettings(bootstrap_servers=live.bootstrap)
    # kwok runs no container: the topics Job's pod "succeeds" without running `sluice topics
    # create`, so the topics are made here as that Job would make them.
    create_topics(
        settings,
        [TopicSpec(live.topics[k], PARTITIONS if k in ("jobs", "high") else 1, {}) for k in live.topics],
    )
    live.values.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrapServers": live.bootstrap,
                    "topics": live.topics,
                    "partitions": PARTITIONS,
                    "replicationFactor": 1,
                },
                "worker": {"engine": "fake"},
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": MAX_REPLICAS,
                    "lagThreshold": LAG,
                    "highLagThreshold": HIGH_LAG,
                    "pollingInterval": 1,
                    "cooldownPeriod": 5,
                    "scaleDownStabilizationSeconds": 0,
                    "scaleDownPodsPerMinute": 60,
                },
            }
        )
    )
    done = live.helm(
        "install",
        RELEASE,
        str(CHART),
        "--create-namespace",
        "--values",
        str(live.values),
        "--wait",
        "--timeout",
        "3m",
    )
    assert done.returncode == 0, done.stderr
    jobs = live.batch.list_namespaced_job(NAMESPACE).items
    assert all(j.status.succeeded == 1 for j in jobs)  # the hook Job is deleted once it succeeded
    for deployment in live.apps.list_namespaced_deployment(NAMESPACE).items:
        assert deployment.status.ready_replicas == deployment.spec.replicas, deployment.metadata.name
    assert live.replicas() == 1


def test_a_backlog_scales_the_workers_to_the_charts_formula(live: Live) -> None:
    live.produce(live.topics["jobs"], 35)
    want = expected(35, 0)
    assert want == 4
    live.until(f"{want} workers for 35 jobs of lag", lambda: live.replicas() == want)
    time.sleep(5)  # and it stays there
    assert live.replicas() == want


def test_the_high_topics_lag_scales_too_capped_at_max_replicas(live: Live) -> None:
    live.produce(live.topics["high"], 40)
    want = expected(35, 40)
    assert want == MAX_REPLICAS  # 40 / 5 = 8 asks for more than maxReplicas
    live.until(f"{want} workers with 40 high jobs of lag", lambda: live.replicas() == want)


def test_sluice_status_reads_the_pools_from_the_api_server_and_their_lag_from_kafka(live: Live) -> None:
    env = {**live.cluster.env(), "KAFKA_BOOTSTRAP_SERVERS": live.bootstrap}
    cli = [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", "status", "--namespace", NAMESPACE]
    done = subprocess.run([*cli, "--json"], env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (pool,) = orjson.loads(done.stdout)
    assert (pool["name"], pool["deployment"], pool["desired"], pool["ready"]) == (
        "",
        f"{RELEASE}-sluice-worker",
        MAX_REPLICAS,
        MAX_REPLICAS,
    )
    assert {m["target"] for m in pool["metric"]} == {str(LAG), str(HIGH_LAG)}  # KEDA's HPA, per topic
    assert pool["lag"] == 35 + 40 and pool["oldest_s"] > 0
    groups = {p["topic"]: p["group"] for p in pool["partitions"]}
    assert groups == {live.topics["jobs"]: live.group, live.topics["high"]: f"{live.group}.high"}
    text = subprocess.run(cli, env=env, capture_output=True, timeout=120, check=True).stdout.decode()
    assert f"{RELEASE}-sluice-worker" in text and f"{MAX_REPLICAS}/{MAX_REPLICAS}" in text


def test_helm_upgrade_changes_a_setting_and_leaves_the_topics(live: Live) -> None:
    before = live.topic_ids()
    done = live.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "--values",
        str(live.values),
        "--set",
        "autoscaling.minReplicas=0",
        "--wait",
        "--timeout",
        "3m",
    )
    assert done.returncode == 0, done.stderr
    scaled = live.apps.read_namespaced_deployment(f"{RELEASE}-sluice-worker", NAMESPACE)
    assert scaled is not None
    assert {k: v for k, v in live.topic_ids().items() if k in live.topics.values()} == {
        k: v for k, v in before.items() if k in live.topics.values()
    }


def test_drained_it_scales_to_zero_and_new_jobs_wake_it(live: Live) -> None:
    live.drain()
    live.until("zero workers once drained (minReplicas 0)", lambda: live.replicas() == 0)
    live.produce(live.topics["jobs"], 3)  # above activationLagThreshold (1)
    live.until("workers again for 3 new jobs", lambda: live.replicas() == expected(3, 0))


def test_live_objects_carry_the_pdb_probes_and_grace_period(live: Live) -> None:
    (pdb,) = [p for p in live.policy.list_namespaced_pod_disruption_budget(NAMESPACE).items]
    assert pdb.spec.max_unavailable == 1
    pods = live.core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/component=worker").items
    assert pods and all(p.status.phase == "Running" for p in pods)
    spec = pods[0].spec
    (worker,) = spec.containers
    # A worker serves no traffic (no readiness probe): started once its metrics port answers (the
    # model may take minutes to load), restarted if it stops answering.
    assert worker.startup_probe.tcp_socket.port == "metrics"
    assert worker.liveness_probe.tcp_socket.port == "metrics"
    # The worker's drain (30 s) plus 30 s, so that a stopping worker finishes its jobs.
    assert spec.termination_grace_period_seconds == 60


def test_helm_uninstall_leaves_the_topics(live: Live) -> None:
    before = live.topic_ids()
    done = live.helm("uninstall", RELEASE, "--wait")
    assert done.returncode == 0, done.stderr
    left = live.topic_ids()
    assert {t: left.get(t) for t in live.topics.values()} == {t: before[t] for t in live.topics.values()}
    live.until("no worker Deployment", lambda: not live.apps.list_namespaced_deployment(NAMESPACE).items, 60)


def test_two_pools_scale_on_their_own_lag(live: Live) -> None:
    """A busy model's pool scales out while an idle one stays at zero."""
    routes = {"m-small": "small", "m-big": "big"}
    settings = KafkaSettings(
        bootstrap_servers=live.bootstrap,
        jobs_topic=live.topics["jobs"],
        high_topic=live.topics["high"],
        jobs_partitions=PARTITIONS,
        pools=routes,
    )
    create_topics(settings, [s for s in pipeline_specs(settings) if s.name not in live.topics.values()])
    values = yaml.safe_load(live.values.read_text())
    values["pools"] = [
        {"name": pool, "model": model, "minReplicas": 0, "maxReplicas": 4} for model, pool in routes.items()
    ]
    pools_values = live.values.with_name("pools.yaml")
    pools_values.write_text(yaml.safe_dump(values))
    done = live.helm(
        "install", "pools", str(CHART), "--values", str(pools_values), "--wait", "--timeout", "3m"
    )
    assert done.returncode == 0, done.stderr
    small, big = "pools-sluice-worker-small", "pools-sluice-worker-big"
    live.until("both pools idle at zero", lambda: live.replicas(small) == live.replicas(big) == 0)

    with JobProducer(ProducerSettings(**settings.model_dump())) as producer:  # routed by model
        for i in range(25):
            producer.submit({"job_id": f"s{i}", "model": "m-small", "prompt": "p"})
        producer.flush()
    want = math.ceil(25 / LAG)
    live.until(f"{want} small-pool workers for 25 jobs", lambda: live.replicas(small) == want)
    time.sleep(5)
    assert (live.replicas(small), live.replicas(big)) == (want, 0)
    assert live.helm("uninstall", "pools", "--wait").returncode == 0
