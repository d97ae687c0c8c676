"""The Helm chart, rendered by the real helm (built from the Go module proxy) and checked against
the Kubernetes API models (the kubernetes client's generated classes), KEDA's own CRD schemas
and Kafka-scaler source, and the settings classes that Sluice's containers read.

No cluster runs here (no container runtime on these machines), so nothing is scheduled: these
tests hold the chart to the APIs it targets, not to a live cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import pytest
import yaml
from kubernetes.client import ApiClient
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from sluice.kafka import consumer_config
from sluice.metrics import SinkMetrics, WorkerMetrics
from sluice.settings import ApiSettings, KafkaSettings, ProducerSettings, SinkSettings, WorkerSettings
from sluice.topics import pipeline_specs, pool_topics, route
from tests.helm import tools

pytestmark = pytest.mark.slow

# Every option that switches a template branch on, so one render covers them all.
ALL_ON = [
    "kafka.securityProtocol=SASL_SSL",
    "kafka.sasl.mechanism=SCRAM-SHA-512",
    "kafka.sasl.existingSecret=kafka-user",
    "kafka.tls.caSecret=kafka-ca",
    "kafka.groupProtocol=consumer",
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "prometheusRule.labels.release=kube-prometheus-stack",
    "worker.maxModelLen=8192",
    "worker.servedModelNames={a,b}",
    "worker.modelCache.existingClaim=models",
    "sink.subscriptions[0].id=all",
    "sink.subscriptions[0].url=https://hooks.example.com/in",
    "worker.extraEnv[0].name=VLLM_LOGGING_LEVEL",
    "worker.extraEnv[0].value=INFO",
    "api.maxLag=5000",
    "grafanaDashboard.enabled=true",
]

# The kubernetes client's model for each built-in kind the chart renders.
MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("batch/v1", "Job"): "V1Job",
}
KEDA_CRDS = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}
OPERATOR_CRDS = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}
# Read by the `sluice` CLI or by libraries rather than by a settings class (VLLM_LOGGING_LEVEL:
# ALL_ON's extraEnv, passed through for vLLM).
OTHER_ENV = {"SLUICE_LOG_LEVEL", "HF_HOME", "HOME", "XDG_CACHE_HOME", "VLLM_LOGGING_LEVEL"}


@pytest.fixture(scope="module")
def keda() -> Path:
    return tools.keda_source()


@pytest.fixture(scope="module")
def operator() -> Path:
    return tools.prometheus_operator_source()


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return tools.render()


@pytest.fixture(scope="module")
def all_on() -> list[dict[str, Any]]:
    return tools.render(*ALL_ON)


def one(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    return doc


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                yield c["name"], c


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as a process would see it (Secret and field references filled in)."""
    return {e["name"]: e.get("value", f"<{e['name']}>") for e in container["env"]}


def dropped(given: Any, kept: Any, path: str = "") -> list[str]:
    """Paths present in `given` but lost in `kept`: fields the API types do not have."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "."]
        lost = []
        for key, value in given.items():
            if key not in kept:
                lost.append(f"{path}.{key}")
            else:
                lost += dropped(value, kept[key], f"{path}.{key}")
        return lost
    if isinstance(given, list) and isinstance(kept, list):
        return [
            p for i, (g, k) in enumerate(zip(given, kept, strict=True)) for p in dropped(g, k, f"{path}[{i}]")
        ]
    return []


def pruned(doc: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths an API server would prune from a custom resource: fields its structural schema lacks."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(doc, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        lost = []
        for key, value in doc.items():
            if props is not None and key in props:
                lost += pruned(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                lost += pruned(value, extra, f"{path}.{key}")
            elif props is not None or extra is False:
                lost.append(f"{path}.{key}")
        return lost
    if isinstance(doc, list) and "items" in schema:
        return [p for i, item in enumerate(doc) for p in pruned(item, schema["items"], f"{path}[{i}]")]
    return []


def crd_schema(keda: Path, kind: str) -> dict[str, Any]:
    return _schema(keda / "config" / "crd" / "bases" / KEDA_CRDS[kind], "v1alpha1")


def operator_schema(operator: Path, kind: str) -> dict[str, Any]:
    return _schema(operator / "example" / "prometheus-operator-crd" / OPERATOR_CRDS[kind], "v1")


def _schema(path: Path, version_name: str) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == version_name]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def keda_metrics(keda: Path) -> dict[str, set[str]]:
    """Metric name -> label names of the Prometheus metrics KEDA's operator exports, from its source."""
    src = (keda / "pkg" / "metricscollector" / "prommetrics.go").read_text()
    consts = (keda / "pkg" / "metricscollector" / "metricscollectors.go").read_text()
    namespace = re.search(r'DefaultPromMetricsNamespace\s*=\s*"(\w+)"', consts)
    shared = re.search(r"metricLabels\s*=\s*\[\]string\{([^}]*)\}", src)
    assert namespace and shared, "KEDA's prommetrics.go changed shape"
    metrics = {}
    for block in re.findall(r"prometheus\.\w+Opts\{(.*?)\},\s*(metricLabels|\[\]string\{[^}]*\})", src, re.S):
        opts, labels = block
        sub = re.search(r'Subsystem:\s*"(\w+)"', opts)
        name = re.search(r'Name:\s*"(\w+)"', opts)
        if sub and name:
            label_src = shared.group(1) if labels == "metricLabels" else labels
            metrics[f"{namespace.group(1)}_{sub.group(1)}_{name.group(1)}"] = set(
                re.findall(r'"(\w+)"', label_src)
            )
    return metrics


def vector_selectors(expr: str) -> list[Any]:
    """The series selectors of a PromQL expression; raises on a syntax error, as Prometheus would."""
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def sluice_metrics() -> dict[str, set[str]]:
    """Series name -> label names of every metric the worker and the sink export."""
    out: dict[str, set[str]] = {}
    for registry in (WorkerMetrics().registry, SinkMetrics().registry):
        for family in registry.collect():
            # A labelled metric not yet observed has no samples: its label names are on the collector.
            collector = registry._names_to_collectors[family.name]
            labels = set(getattr(collector, "_labelnames", ()))
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(
                family.type, ("",)
            )
            for suffix in suffixes:
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def kafka_scaler_keys(keda: Path) -> tuple[set[str], set[str]]:
    """(trigger metadata keys KEDA's Kafka scaler reads, the SASL types it accepts), from its source."""
    src = (keda / "pkg" / "scalers" / "kafka_scaler.go").read_text()
    keys = set(re.findall(r'TriggerMetadata\["(\w+)"\]', src))
    for const in set(re.findall(r"TriggerMetadata\[(\w+)\]", src)):
        keys.add(re.search(rf'\b{const}\s*=\s*"(\w+)"', src).group(1))  # type: ignore[union-attr]
    # Since v2.19 the scaler declares its metadata in struct tags.
    keys |= set(re.findall(r'keda:"name=(\w+),order=[^"]*triggerMetadata', src))
    sasl = set(re.findall(r'KafkaSASLType\w+\s+kafkaSaslType = "(\w+)"', src))
    return keys, sasl


def readable_env(cls: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str) and c.isupper()}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def settings_from(env: dict[str, str], cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        for name, value in env.items():
            m.setenv(name, value)
        return cls()


def test_helm_lint_passes_strict() -> None:
    lint = subprocess.run(
        [str(tools.helm()), "lint", "--strict", "--kube-version", tools.KUBE_VERSION, str(tools.CHART)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("case", ["default", "all_on", "no_autoscaling"])
def test_built_in_kinds_match_the_kubernetes_api_models(case: str, request: pytest.FixtureRequest) -> None:
    docs = (
        tools.render("autoscaling.enabled=false", "api.enabled=false")
        if case == "no_autoscaling"
        else request.getfixturevalue(case)
    )
    client = ApiClient()
    checked = 0
    for doc in docs:
        model = MODELS.get((doc["apiVersion"], doc["kind"]))
        if model is None:
            continue
        kept = client.sanitize_for_serialization(  # type: ignore[no-untyped-call]
            client.deserialize(json.dumps(doc), model, "application/json")
        )
        assert dropped(doc, kept) == [], f"{doc['kind']} {doc['metadata']['name']}: fields the API lacks"
        checked += 1
    assert checked >= 4


def test_keda_resources_match_kedas_crds_and_kafka_scaler(all_on: list[dict[str, Any]], keda: Path) -> None:
    keys, sasl_types = kafka_scaler_keys(keda)
    assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= keys  # the source parsed
    for kind in KEDA_CRDS:
        (doc,) = [d for d in all_on if d["kind"] == kind]
        schema = crd_schema(keda, kind)
        jsonschema.Draft7Validator(schema).validate(doc)
        assert pruned(doc, schema) == [], f"{kind}: fields KEDA's CRD does not have"
    scaled = one(all_on, "ScaledObject", "-worker")
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert set(meta) <= keys, f"metadata KEDA's Kafka scaler ignores: {set(meta) - keys}"
        assert meta["sasl"] in sasl_types and meta["tls"] == "enable"
        assert int(meta["lagThreshold"]) > 0 and int(meta["activationLagThreshold"]) >= 0
        assert meta["offsetResetPolicy"] in ("earliest", "latest")
    auth = one(all_on, "TriggerAuthentication", "-kafka")
    assert {p["parameter"] for p in auth["spec"]["secretTargetRef"]} == {"username", "password", "ca"}


def test_monitoring_resources_match_the_prometheus_operators_crds(
    all_on: list[dict[str, Any]], operator: Path
) -> None:
    for kind in OPERATOR_CRDS:
        docs = [d for d in all_on if d["kind"] == kind]
        assert docs, kind
        schema = operator_schema(operator, kind)
        for doc in docs:
            jsonschema.Draft7Validator(schema).validate(doc)
            assert pruned(doc, schema) == [], f"{kind}: fields the Prometheus Operator's CRD does not have"


def test_alerts_parse_and_select_only_series_that_exist(all_on: list[dict[str, Any]], keda: Path) -> None:
    rule = one(all_on, "PrometheusRule", "-sluice")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    exported = sluice_metrics() | keda_metrics(keda)
    assert "keda_scaler_metrics_value" in exported and "sluice_worker_jobs_total" in exported
    metrics_services = {
        d["metadata"]["name"] for d in all_on if d["kind"] == "Service" and "metrics" in d["metadata"]["name"]
    }
    scaled_object = one(all_on, "ScaledObject", "-worker")["metadata"]["name"]
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert len(alerts) == 7
    for name, r in alerts.items():
        selectors = vector_selectors(r["expr"])
        assert selectors, name
        for sel in selectors:
            assert sel.name in exported, f"{name}: no such series {sel.name}"
            matchers = {m.name: m.value for m in sel.matchers.matchers}
            if sel.name.startswith("sluice_"):
                # Scoped to this release's pods, found through its metrics Services.
                assert matchers.pop("namespace") == "ml" and matchers.pop("service") in metrics_services
            else:
                assert matchers.pop("scaledObject") == scaled_object
            assert set(matchers) <= exported[sel.name], f"{name}: {sel.name} has no label {set(matchers)}"
    # Templating left Prometheus's own placeholders alone.
    assert alerts["SluiceWebhooksDeadLettered"]["annotations"]["summary"].endswith("({{ $labels.reason }})")
    # The backlog alert fires beyond what maxReplicas workers hold (8 x 1,024 by default).
    assert alerts["SluiceBacklogBeyondMaxWorkers"]["expr"].endswith("> 8192")
    off = tools.render("prometheusRule.enabled=true", "autoscaling.enabled=false")
    assert "SluiceBacklogBeyondMaxWorkers" not in {
        r["alert"] for r in one(off, "PrometheusRule", "-sluice")["spec"]["groups"][0]["rules"]
    }


def test_keda_watches_the_groups_and_topics_the_workers_use(
    default: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = settings_from(env_of(dict(containers(default))["worker"]), WorkerSettings, monkeypatch)
    triggers = one(default, "ScaledObject", "-worker")["spec"]["triggers"]
    watched = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers}
    assert watched == {(worker.group_id, worker.jobs_topic), (worker.high_group_id, worker.high_topic)}
    # KEDA counts a partition the group never committed as the worker will read it.
    reset = consumer_config(worker, worker.group_id)["auto.offset.reset"]
    assert {t["metadata"]["offsetResetPolicy"] for t in triggers} == {reset}
    # The default target is one worker's pipeline: jobs running plus as many buffered.
    in_flight = worker.max_in_flight or 2 * worker.max_num_seqs
    pipeline = in_flight + (worker.max_buffered or in_flight)
    lag = {t["metadata"]["topic"]: int(t["metadata"]["lagThreshold"]) for t in triggers}
    assert lag == {worker.jobs_topic: pipeline, worker.high_topic: pipeline // 2}
    # With autoscaling on, the HPA owns the replica count.
    assert "replicas" not in one(default, "Deployment", "-worker")["spec"]


def test_every_variable_the_chart_sets_is_read_by_sluice(
    all_on: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    readers: dict[str, tuple[type[BaseSettings], ...]] = {
        "worker": (WorkerSettings,),
        "sink": (SinkSettings,),
        "api": (ApiSettings, ProducerSettings),  # the API submits jobs, too
        "topics": (KafkaSettings,),
    }
    seen = set()
    for name, container in containers(all_on):
        env = env_of(container)
        unread = set(env) - set().union(*(readable_env(cls) for cls in readers[name])) - OTHER_ENV
        assert not unread, f"{name}: set by the chart, read by nothing: {unread}"
        for cls in readers[name]:
            settings = settings_from(env, cls, monkeypatch)  # the values validate, too
            assert settings.bootstrap_servers == "kafka:9092" and settings.security_protocol == "SASL_SSL"
            assert settings.ssl_ca_location == "/etc/sluice/kafka-ca/ca.crt"
            assert settings.group_protocol == "consumer"
        seen.add(name)
    api = settings_from(env_of(dict(containers(all_on))["api"]), ProducerSettings, monkeypatch)
    assert (api.worker_group_id, api.max_lag) == ("rel-sluice-workers", 5000)
    assert seen == set(readers)
    worker = settings_from(env_of(dict(containers(all_on))["worker"]), WorkerSettings, monkeypatch)
    assert worker.served_model_names == ["a", "b"] and worker.max_model_len == 8192
    assert worker.worker_id == "<SLUICE_WORKER_WORKER_ID>"  # the pod name, from the downward API


def test_the_worker_can_drain_before_kubernetes_kills_it(default: list[dict[str, Any]]) -> None:
    deployment = one(default, "Deployment", "-worker")
    spec = deployment["spec"]["template"]["spec"]
    drain = float(env_of(spec["containers"][0])["SLUICE_WORKER_DRAIN_TIMEOUT_S"])
    assert spec["terminationGracePeriodSeconds"] > drain
    # New workers come up before old ones go (a model load takes minutes).
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_without_autoscaling_the_replica_count_is_fixed() -> None:
    docs = tools.render("autoscaling.enabled=false", "worker.replicas=3")
    assert one(docs, "Deployment", "-worker")["spec"]["replicas"] == 3
    assert not [d for d in docs if d["kind"] in KEDA_CRDS]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["worker.modle=x"], "at '/worker': additional properties 'modle' not allowed"),
        (["worker.maxNumSeqs=many"], "at '/worker/maxNumSeqs': got string, want integer"),
        (["kafka.securityProtocol=SASL"], "at '/kafka/securityProtocol': value must be one of 'PLAINTEXT'"),
        (["kafka.groupProtocol=kip848"], "at '/kafka/groupProtocol': value must be one of 'classic'"),
        (
            ["autoscaling.minReplicas=4", "autoscaling.maxReplicas=2"],
            "autoscaling.maxReplicas (2) is below autoscaling.minReplicas (4)",
        ),
        (
            ["autoscaling.maxReplicas=16", "kafka.partitions=12"],
            "autoscaling.maxReplicas (16) is above kafka.partitions (12): workers beyond the partition count",
        ),
        (["kafka.securityProtocol=SASL_SSL"], "kafka.securityProtocol SASL_SSL needs kafka.sasl.mechanism"),
        (
            ["kafka.securityProtocol=SASL_SSL", "kafka.sasl.mechanism=PLAIN"],
            "kafka.sasl.existingSecret must name the Secret",
        ),
        (
            ["kafka.sasl.mechanism=PLAIN", "kafka.sasl.existingSecret=s"],
            "kafka.sasl.mechanism is set but kafka.securityProtocol is PLAINTEXT",
        ),
        (["kafka.topics.jobs=bad topic"], "at '/kafka/topics/jobs': 'bad topic' does not match pattern"),
        (["pools[0].name=Big", "pools[0].model=m"], "at '/pools/0/name': 'Big' does not match pattern"),
        (["pools[0].name=a"], "at '/pools/0': missing property 'model'"),
        (
            ["pools[0].name=a", "pools[0].model=m", "pools[1].name=a", "pools[1].model=n"],
            'pools: two pools are named "a"',
        ),
        (
            ["pools[0].name=a", "pools[0].model=m", "pools[0].maxReplicas=8", "pools[0].partitions=4"],
            "pools[a].maxReplicas (8) is above pools[a].partitions (4): workers beyond the partition count",
        ),
    ],
)
def test_bad_values_fail_with_a_message_naming_them(sets: list[str], message: str) -> None:
    done = tools.template(*sets)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_idle_consumers_beyond_the_partitions_only_when_asked() -> None:
    docs = tools.render(
        "kafka.partitions=12", "autoscaling.maxReplicas=16", "autoscaling.allowIdleConsumers=true"
    )
    scaled = one(docs, "ScaledObject", "-worker")
    assert scaled["spec"]["maxReplicaCount"] == 16
    assert {t["metadata"]["allowIdleConsumers"] for t in scaled["spec"]["triggers"]} == {"true"}


def test_each_pool_gets_its_workers_scaler_and_budget_on_the_topics_its_models_are_routed_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools = [
        {"name": "small", "model": "m-small", "minReplicas": 0, "maxReplicas": 4, "partitions": 6},
        {
            "name": "big",
            "model": "m-big",
            "servedModelNames": ["m-big", "alias"],
            "maxReplicas": 8,
            "resources": {"limits": {"nvidia.com/gpu": "2"}},
        },
    ]
    docs = tools.render(values={"pools": pools, "kafka": {"partitions": 12}})
    api = settings_from(env_of(dict(containers(docs))["api"]), KafkaSettings, monkeypatch)
    selectors = set()
    for pool in pools:
        name = str(pool["name"])
        deployment = one(docs, "Deployment", f"-worker-{name}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        worker = settings_from(env_of(container), WorkerSettings, monkeypatch)
        assert worker.pool == name and worker.names == pool.get("servedModelNames", [pool["model"]])
        jobs, high = pool_topics(worker, worker.pool)
        for model in worker.names:  # the API sends this pool's models where its workers read
            assert route(api, model) == (jobs, high)
        scaled = one(docs, "ScaledObject", f"-worker-{name}")
        assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (
            pool.get("minReplicas", 1),
            pool["maxReplicas"],
        )
        watched = {
            (t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in scaled["spec"]["triggers"]
        }
        assert watched == {(worker.group_id, jobs), (worker.high_group_id, high)}
        assert container["resources"] == pool.get("resources", {"limits": {"nvidia.com/gpu": "1"}})
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert (
            one(docs, "PodDisruptionBudget", f"-worker-{name}")["spec"]["selector"]["matchLabels"] == selector
        )
        selectors.add(tuple(sorted(selector.items())))
    assert len(selectors) == 2  # no pool's budget or rollout touches the other's pods
    topics = settings_from(env_of(dict(containers(docs))["topics"]), KafkaSettings, monkeypatch)
    specs = {spec.name: spec.partitions for spec in pipeline_specs(topics)}
    assert (specs[pool_topics(topics, "small")[0]], specs[pool_topics(topics, "big")[1]]) == (6, 12)


@pytest.mark.parametrize("pools", [False, True])
def test_every_dashboard_query_parses_and_selects_only_series_this_release_exports(
    pools: bool, keda: Path
) -> None:
    extra = (
        ["pools[0].name=small", "pools[0].model=m-a", "pools[1].name=big", "pools[1].model=m-b"]
        if pools
        else []
    )
    docs = tools.render(*ALL_ON, *extra)
    config_map = one(docs, "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's label
    dashboard = json.loads(config_map["data"]["sluice.json"])
    exported = sluice_metrics() | keda_metrics(keda)
    services = {
        d["metadata"]["name"] for d in docs if d["kind"] == "Service" and "metrics" in d["metadata"]["name"]
    }
    scaled_objects = {d["metadata"]["name"] for d in docs if d["kind"] == "ScaledObject"}
    assert len(scaled_objects) == (2 if pools else 1)
    seen = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for sel in vector_selectors(target["expr"]):
                assert sel.name in exported, f"{panel['title']}: no such series {sel.name}"
                seen.add(sel.name)
                matchers = {m.name: m for m in sel.matchers.matchers}
                assert matchers.pop("namespace").value == "ml"
                if sel.name.startswith("sluice_"):
                    assert matchers.pop("service").value in services  # this release's pods only
                else:  # every pool's ScaledObject, and no other release's
                    pattern = matchers.pop("scaledObject").value
                    assert {n for n in scaled_objects if re.fullmatch(pattern, n)} == scaled_objects
                    assert not re.fullmatch(pattern, "other-sluice-worker")
                by = set(re.findall(r"by \(([^)]*)\)", target["expr"]))
                labels = {label.strip() for group in by for label in group.split(",")} - {"le"}
                assert set(matchers) | labels <= exported[sel.name], (
                    f"{panel['title']}: {sel.name} lacks {labels}"
                )
    # Throughput, latency, lag per pool, in flight, failures by code, webhook outcomes, DLQ growth.
    assert {
        "sluice_worker_jobs_total",
        "sluice_worker_generation_seconds_bucket",
        "keda_scaler_metrics_value",
        "sluice_worker_in_flight",
        "sluice_worker_failures_total",
        "sluice_sink_deliveries_total",
        "sluice_worker_dlq_total",
        "sluice_sink_dead_lettered_total",
    } <= seen
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
