"""Typed settings for every service, read from SLUICE_* environment variables (and CLI flags).

One class per service; each inherits the Kafka connection and topic names from KafkaSettings.
Secrets are SecretStr so they never appear in reprs, logs or metrics.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sluice.errors import ConfigError
from sluice.urlpolicy import UrlPolicy

__all__ = [
    "ApiSettings",
    "CliSettings",
    "EngineSettings",
    "KafkaSettings",
    "ProducerSettings",
    "SinkSettings",
    "Subscription",
    "WorkerSettings",
    "load",
]


def _json(text: str, expected: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"expected {expected}; this is not valid JSON ({exc})") from None


def _words(value: Any) -> Any:
    """A list from the environment: a JSON array, or comma/space separated words."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return _json(text, "a JSON array or comma-separated words")
        return [w for w in text.replace(",", " ").split() if w]
    return value


def _object(value: Any) -> Any:
    """A mapping from the environment: a JSON object, or comma-separated name=value pairs."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            return _json(text, 'a JSON object ({"name": value, ...}) or name=value pairs')
        pairs = [w for w in text.replace(",", " ").split() if w]
        if any("=" not in p for p in pairs):
            raise ValueError(
                'expected a JSON object ({"name": value, ...}) or comma-separated name=value pairs'
            )
        return {k: _scalar(v) for k, v in (p.split("=", 1) for p in pairs)}
    return value


def _scalar(text: str) -> Any:
    # name=value pairs carry JSON scalars where they parse (numbers, true/false), text otherwise.
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _array(value: Any) -> Any:
    if isinstance(value, str):
        return _json(value.strip(), "a JSON array of objects")
    return value


# Every list or mapping setting is parsed here, never by pydantic-settings' JSON decoding, so words
# and JSON are accepted alike and a bad value is a validation error naming its variable.
Words = Annotated[list[str], NoDecode, BeforeValidator(_words)]
Options = Annotated[dict[str, Any], NoDecode, BeforeValidator(_object)]


def _shared(name: str) -> AliasChoices:
    # Shared fields keep the SLUICE_ prefix whatever prefix a service class sets for its own.
    return AliasChoices(f"SLUICE_{name.upper()}", name)


POOL_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?")


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class KafkaSettings(BaseSettings):
    """How to reach the cluster and which topics to use; shared by every service."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "SLUICE_BOOTSTRAP_SERVERS", "bootstrap_servers"
        ),
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_shared("security_protocol")
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias=_shared("sasl_mechanism")
    )
    sasl_username: str | None = Field(None, validation_alias=_shared("sasl_username"))
    sasl_password: SecretStr | None = Field(None, validation_alias=_shared("sasl_password"))
    ssl_ca_location: str | None = Field(None, validation_alias=_shared("ssl_ca_location"))
    client_overrides: Options = Field(default_factory=dict, validation_alias=_shared("client_overrides"))
    # Consumer groups' rebalance protocol: "classic" (JoinGroup/SyncGroup, cooperative-sticky) or
    # "consumer" (KIP-848, Kafka 4.0+: the broker assigns partitions and members move them without a
    # group-wide barrier). Under "consumer" the broker owns the session timeout and heartbeat
    # (group.consumer.session.timeout.ms, or the group's consumer.session.timeout.ms).
    group_protocol: Literal["classic", "consumer"] = Field(
        "classic", validation_alias=_shared("group_protocol")
    )

    jobs_topic: str = Field("inference-jobs", validation_alias=_shared("jobs_topic"))
    # Jobs with priority "high" go here; workers start them first (see consumer/backlog.py).
    high_topic: str = Field("inference-jobs.high", validation_alias=_shared("high_topic"))
    results_topic: str = Field("inference-results", validation_alias=_shared("results_topic"))
    dlq_topic: str = Field("inference-dlq", validation_alias=_shared("dlq_topic"))
    jobs_partitions: int = Field(12, ge=1, validation_alias=_shared("jobs_partitions"))
    results_partitions: int = Field(12, ge=1, validation_alias=_shared("results_partitions"))
    replication_factor: int = Field(1, ge=1, validation_alias=_shared("replication_factor"))
    # Every producer (jobs, results, deliveries): batches compressed with this codec, waiting up to
    # linger_ms to fill them.
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "lz4", validation_alias=_shared("compression_type")
    )
    linger_ms: int = Field(5, ge=0, validation_alias=_shared("linger_ms"))
    # Worker pools, one per model: model name -> pool name (`name=pool` pairs or a JSON object).
    # Each pool has its own jobs topics (sluice/topics.py) and workers; producers route a job by
    # its model and refuse a model no pool serves. Empty: one pool on jobs_topic and high_topic.
    pools: Annotated[dict[str, str], NoDecode, BeforeValidator(_object)] = Field(
        default_factory=dict, validation_alias=_shared("pools")
    )
    # Partitions of a pool's jobs topics (`pool=N` pairs); a pool not named here has jobs_partitions.
    pool_partitions: Annotated[dict[str, int], NoDecode, BeforeValidator(_object)] = Field(
        default_factory=dict, validation_alias=_shared("pool_partitions")
    )
    # Retry tiers and the dead-letter topic of webhook deliveries are named from this prefix.
    deliveries_topic: str = Field("inference-deliveries", validation_alias=_shared("deliveries_topic"))
    # The gateway's API keys (hashed), one compacted record per key.
    api_keys_topic: str = Field("sluice-api-keys", validation_alias=_shared("api_keys_topic"))
    # Files uploaded to the gateway: what each file is (compacted, mirrored by every replica) and its
    # bytes in chunks (compacted, read on demand by offset).
    files_topic: str = Field("sluice-files", validation_alias=_shared("files_topic"))
    file_chunks_topic: str = Field("sluice-file-chunks", validation_alias=_shared("file_chunks_topic"))
    # Batches: one compacted record per batch; `<batches_topic>.work` is how gateways share them out.
    batches_topic: str = Field("sluice-batches", validation_alias=_shared("batches_topic"))

    # Which webhook URLs may be submitted and called (sluice/urlpolicy.py); checked at submit
    # (producer) and at every connection (sink), so both read the same variables.
    webhook_allow_http: bool = Field(False, validation_alias=_shared("webhook_allow_http"))
    webhook_allowlist: Words = Field(default_factory=list, validation_alias=_shared("webhook_allowlist"))

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, pools: dict[str, str]) -> dict[str, str]:
        for model, pool in pools.items():
            if not isinstance(pool, str) or not POOL_NAME.fullmatch(pool) or pool in ("cancel", "high"):
                raise ValueError(
                    f"pool of model {model!r} is {pool!r}: a pool name is lowercase letters, digits "
                    "and dashes (a topic suffix and a Kubernetes name), and not 'cancel' or 'high'"
                )
        return pools

    def url_policy(self) -> UrlPolicy:
        return UrlPolicy(self.webhook_allow_http, tuple(self.webhook_allowlist))

    def child_env(self) -> dict[str, str]:
        """The variables that point a child `sluice` process at this cluster and these topics."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "SLUICE_REPLICATION_FACTOR": str(self.replication_factor),
            "SLUICE_JOBS_TOPIC": self.jobs_topic,
            "SLUICE_HIGH_TOPIC": self.high_topic,
            "SLUICE_RESULTS_TOPIC": self.results_topic,
            "SLUICE_DLQ_TOPIC": self.dlq_topic,
            "SLUICE_DELIVERIES_TOPIC": self.deliveries_topic,
            "SLUICE_API_KEYS_TOPIC": self.api_keys_topic,
            "SLUICE_FILES_TOPIC": self.files_topic,
            "SLUICE_FILE_CHUNKS_TOPIC": self.file_chunks_topic,
            "SLUICE_BATCHES_TOPIC": self.batches_topic,
            "SLUICE_WEBHOOK_ALLOW_HTTP": "1" if self.webhook_allow_http else "0",
            "SLUICE_WEBHOOK_ALLOWLIST": ",".join(self.webhook_allowlist),
            "SLUICE_POOLS": orjson.dumps(self.pools).decode(),
            "SLUICE_POOL_PARTITIONS": orjson.dumps(self.pool_partitions).decode(),
            "SLUICE_GROUP_PROTOCOL": self.group_protocol,
        }

    @model_validator(mode="after")
    def _group_timeouts(self) -> Self:
        # A session timeout or heartbeat a service would not send is refused rather than ignored.
        if self.group_protocol == "consumer":
            prefix = str(self.model_config.get("env_prefix", "SLUICE_")).upper()
            for name in ("session_timeout_ms", "heartbeat_interval_ms"):
                if name in self.model_fields_set:
                    raise ValueError(
                        f"{prefix}{name.upper()}: not used with SLUICE_GROUP_PROTOCOL=consumer, where "
                        f"the broker sets it (group.consumer.{name.replace('_', '.')}, or the "
                        f"group's consumer.{name.replace('_', '.')})"
                    )
        return self

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings common to producers, consumers and admin clients."""
        conf: dict[str, Any] = {
            # librdkafka's own log lines go through Python logging, so they come out as JSON too.
            "logger": logging.getLogger("sluice.librdkafka"),
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        conf.update(self.client_overrides)
        return conf


class CliSettings(BaseSettings):
    """What the `sluice` command itself reads: where its caches live (the local broker's jars and
    data) and how much it logs (--log-level overrides it)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore")

    cache_dir: Path = Path(".cache")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # `sluice batch`: which gateway, with which key.
    api_url: str = "http://127.0.0.1:8080"
    api_key: SecretStr | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ProducerSettings(KafkaSettings):
    """Settings of the job producer (library and `sluice submit`)."""

    delivery_timeout_ms: int = Field(120_000, ge=1000)
    # Backpressure: refuse jobs while the workers' lag on the target topic is above this (None: off).
    max_lag: int | None = Field(None, ge=0, validation_alias=_shared("max_lag"))
    lag_check_interval_s: float = Field(2.0, ge=0.0, validation_alias=_shared("lag_check_interval_s"))
    worker_group_id: str = Field(
        "sluice-workers", validation_alias=AliasChoices("SLUICE_WORKER_GROUP_ID", "worker_group_id")
    )


class EngineSettings(BaseModel):
    """What the worker's engine runs (SLUICE_WORKER_* like the rest of WorkerSettings, which
    includes these): vllm_args() turns them into vLLM's AsyncEngineArgs in one place."""

    model: str | None = None
    served_model_names: Words = Field(default_factory=list)
    max_num_seqs: int = Field(256, ge=1)
    max_model_len: int | None = None
    dtype: str = "auto"
    kv_cache_memory_bytes: int | None = None
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    enforce_eager: bool = False
    lora_modules: Annotated[dict[str, str], NoDecode, BeforeValidator(_object)] = Field(default_factory=dict)
    max_lora_rank: int = Field(16, ge=1)
    # How the worker drives vLLM: "thread", a synchronous LLMEngine stepped by a thread of its own,
    # as LLM.generate does (at LLM.generate's tok/s on a small model, where "async" measured ~10 %
    # below: BENCHMARKS.md); "async", AsyncLLM's output handling on the worker's event loop, which
    # data parallelism (data_parallel_size > 1 in engine_args) needs and gets by default.
    vllm_driver: Literal["async", "thread"] = "thread"
    # Any other AsyncEngineArgs field, passed as given (JSON object or name=value pairs).
    engine_args: Options = Field(default_factory=dict)
    # The FakeEngine (engine "fake", a test double): `fake_max_batch` sequences at once, each
    # taking fake_latency_s plus its output words at fake_tokens_per_s.
    fake_latency_s: float = Field(0.0, ge=0.0)
    fake_tokens_per_s: float = Field(0.0, ge=0.0)
    fake_max_batch: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _driver(self) -> EngineSettings:
        dp = self.engine_args.get("data_parallel_size", 1)
        if isinstance(dp, int) and dp > 1 and self.vllm_driver == "thread":
            if "vllm_driver" in self.model_fields_set:
                raise ValueError(
                    f"SLUICE_WORKER_VLLM_DRIVER=thread drives one engine, but SLUICE_WORKER_ENGINE_ARGS "
                    f"asks for data_parallel_size={dp}: use SLUICE_WORKER_VLLM_DRIVER=async"
                )
            self.vllm_driver = "async"  # vLLM balances data-parallel engines in AsyncLLM only
        return self

    @property
    def names(self) -> list[str]:
        """The model names jobs may ask for (the model's path when none are given)."""
        return self.served_model_names or ([self.model] if self.model else [])

    def vllm_args(self) -> dict[str, Any]:
        """Keyword arguments of vLLM's AsyncEngineArgs."""
        return {
            "model": self.model,
            "served_model_name": self.names,
            "max_num_seqs": self.max_num_seqs,
            "max_model_len": self.max_model_len,
            "dtype": self.dtype,
            "kv_cache_memory_bytes": self.kv_cache_memory_bytes,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enforce_eager": self.enforce_eager,
            "enable_lora": bool(self.lora_modules),
            "max_lora_rank": self.max_lora_rank,
            "disable_log_stats": True,
            **self.engine_args,
        }


class WorkerSettings(KafkaSettings, EngineSettings):
    """Settings of one worker (consumer-group member) and of its engine (EngineSettings)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_WORKER_", extra="ignore", populate_by_name=True)

    group_id: str = "sluice-workers"
    # The worker pool this worker is part of (KafkaSettings.pools): it reads that pool's jobs
    # topics, in group sluice-workers-<pool> unless group_id says otherwise. None: the default pool.
    pool: str | None = None
    worker_id: str = Field(default_factory=_default_worker_id)
    batch_size: int = Field(256, ge=1)
    # Jobs admitted to the engine at once; None: twice the engine's batch size (max_num_seqs), so a
    # finished sequence's slot is refilled at once from jobs already waiting inside the engine.
    max_in_flight: int | None = Field(None, ge=1)
    # Records polled ahead of the engine, per topic; None: as many as max_in_flight.
    max_buffered: int | None = Field(None, ge=1)
    low_water: float = Field(0.5, gt=0.0, lt=1.0)
    # While both topics have jobs waiting, at least this share of starts goes to the normal topic.
    normal_share: float = Field(0.1, ge=0.0, le=1.0)
    poll_timeout_s: float = Field(0.05, gt=0.0)
    commit_interval_s: float = Field(1.0, ge=0.0)
    drain_timeout_s: float = Field(30.0, ge=0.0)
    # A job whose engine call raises RetryableError is tried again this many times (backoff doubling
    # from engine_retry_backoff_s), then gets a failed result (engine_transient_error).
    engine_retries: int = Field(2, ge=0)
    # Exactly-once mode (sluice.transactions): results and consumed offsets commit in one Kafka
    # transaction per commit interval, so read_committed consumers see one result per job even
    # across kill -9. Off: at-least-once (duplicates possible after a crash, harmless by job id).
    exactly_once: bool = False
    # How long the broker lets a transaction stay open before aborting it. A worker killed inside
    # a transaction leaves it open, and read_committed readers (the sink, downstream services) of
    # every partition it wrote wait until it is aborted: this long, plus the broker's check interval
    # (transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by default). 10 s is Kafka
    # Streams' exactly-once default; librdkafka's own is 60 s. A transaction here lasts one produce
    # and commit (well under a second), or up to its retries while a broker restarts.
    transaction_timeout_ms: int = Field(10_000, ge=1000, le=900_000)
    engine_retry_backoff_s: float = Field(1.0, ge=0.0)
    # A job record larger than this goes to the DLQ (message_too_large) instead of the engine.
    max_job_bytes: int = Field(1_000_000, ge=1)
    # Idempotency: each worker keeps a local view of the results topic (sluice/store.py, SQLite in
    # idempotency_dir, default TMPDIR); a job id that already has a result is not run again: the
    # stored result is re-published (or, for a different job reusing the id, the job goes to the
    # DLQ as job_id_conflict). At start the view is caught up for at most idempotency_catchup_s.
    idempotency: bool = True
    idempotency_dir: Path | None = None
    idempotency_catchup_s: float = Field(30.0, ge=0.0)
    # No job finished for this long while some are in flight: the engine is hung, the worker exits 1.
    # Set it above the longest generation you allow; None turns the watchdog off.
    engine_watchdog_s: float | None = Field(900.0, gt=0.0)
    session_timeout_ms: int = Field(45_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    # The real engine unless asked otherwise: "fake" is a test double (reversed prompts), never a default.
    engine: Literal["fake", "vllm"] = "vllm"
    metrics_port: int | None = None

    @property
    def high_group_id(self) -> str:
        """The consumer group that reads the high-priority topic (its lag is tracked on its own)."""
        return f"{self.group_id}.high"

    @model_validator(mode="after")
    def _pool(self) -> WorkerSettings:
        if self.pool is not None:
            if not POOL_NAME.fullmatch(self.pool) or self.pool in ("cancel", "high"):
                raise ValueError(
                    f"SLUICE_WORKER_POOL={self.pool!r}: a pool name is lowercase letters, digits and "
                    "dashes, and not 'cancel' or 'high'"
                )
            if "group_id" not in self.model_fields_set:  # each pool is a consumer group of its own
                self.group_id = f"sluice-workers-{self.pool}"
        return self


class ApiSettings(KafkaSettings):
    """Settings of `sluice api` (POST /v1/jobs, and GET /v1/jobs/{id} from the local result store)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_API_", extra="ignore", populate_by_name=True)

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    store_path: Path = Path(".cache/result-store.db")
    max_wait_s: float = Field(60.0, ge=0.0)
    # Largest POST /v1/jobs body; larger ones get 413. A worker dead-letters jobs over its
    # max_job_bytes (1 MB by default) anyway.
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # The gateways' consumer group on the batch work topic: each batch is driven by one of them; a
    # gateway that dies hands its batches over after the session timeout.
    group_id: str = "sluice-gateway"
    session_timeout_ms: int = Field(45_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    # Largest file upload (OpenAI's limit for a batch input file); it is streamed, never held whole.
    max_file_bytes: int = Field(200 * 1024 * 1024, ge=1)
    # A cancelled batch stays "cancelling" until every row has its answer from a worker (cancelled,
    # or succeeded if it finished first), at most this long; rows still unanswered then are
    # batch_cancelled in its error file.
    batch_cancel_grace_s: float = Field(60.0, ge=0.0)


class Subscription(BaseModel):
    """A static webhook subscription: every result matching the filters goes to `url`.

    Empty filters match everything. `secrets` sign its deliveries (whsec_... form; several while
    rotating); none: the sink's webhook_secrets.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    url: str
    secrets: list[SecretStr] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    statuses: list[Literal["succeeded", "failed", "expired", "cancelled"]] = Field(default_factory=list)
    # Whether it gets results at all, and which batch events (OpenAI's, e.g. "batch.completed") of
    # its tenants it gets.
    results: bool = True
    events: list[Literal["batch.completed", "batch.failed", "batch.expired", "batch.cancelled"]] = Field(
        default_factory=list
    )

    def wants_event(self, tenant: str | None, kind: str) -> bool:
        return kind in self.events and (not self.tenants or tenant in self.tenants)

    def matches(self, tenant: str | None, model: str | None, status: str) -> bool:
        return (
            self.results
            and (not self.tenants or tenant in self.tenants)
            and (not self.models or model in self.models)
            and (not self.statuses or status in self.statuses)
        )


class SinkSettings(KafkaSettings):
    """Settings of the results sink (webhook delivery)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_SINK_", extra="ignore", populate_by_name=True)

    group_id: str = "sluice-sink"
    # Signing secrets of per-job webhooks, whsec_<base64> (or plain text); while rotating, list the
    # new and the old one: every delivery then carries a signature for each.
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices(
            "SLUICE_SINK_WEBHOOK_SECRETS", "SLUICE_SINK_WEBHOOK_SECRET", "webhook_secrets"
        ),
    )
    subscriptions: Annotated[list[Subscription], NoDecode, BeforeValidator(_array)] = Field(
        default_factory=list
    )
    # Delay before each attempt, in seconds: the first is immediate (Standard Webhooks' schedule).
    retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    retry_jitter: float = Field(0.1, ge=0.0, lt=1.0)
    timeout_s: float = Field(15.0, gt=0.0)
    # Per endpoint (scheme://host:port): connections at once; how long a delivery may wait in its
    # line for one before the line is moved to the first retry tier; the circuit breaker.
    endpoint_concurrency: int = Field(16, ge=1)
    endpoint_max_wait_s: float = Field(10.0, gt=0.0)
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(30.0, gt=0.0)
    # Deliveries in memory across all endpoints; above it the sink stops consuming for a while.
    max_pending: int = Field(4096, ge=1)
    batch_size: int = Field(512, ge=1)
    # With nothing to do, poll Kafka again after this long: it bounds the latency the sink adds
    # (confluent-kafka offers no awaitable poll); when idle that is 200 non-blocking polls a second.
    idle_poll_s: float = Field(0.005, gt=0.0)
    # On SIGTERM: how long attempts in progress may take to finish before they are cancelled (a
    # cancelled one is made again by whichever sink next owns its partition).
    drain_timeout_s: float = Field(20.0, ge=0.0)
    session_timeout_ms: int = Field(45_000, ge=1000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    commit_interval_s: float = Field(1.0, ge=0.0)
    metrics_port: int | None = None

    @field_validator("webhook_secrets", "retry_schedule", mode="before")
    @classmethod
    def _sink_words(cls, value: Any) -> Any:
        return _words(value)

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if not value or any(d < 0 for d in value):
            raise ValueError("retry_schedule needs at least one delay, none negative")
        return value


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: Any) -> S:
    """`cls(**overrides)` (the environment fills the rest); an invalid value raises ConfigError with
    one line per problem naming the environment variable, what it holds and what it expects."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(cls, e) for e in exc.errors())) from None


def _describe(cls: type[BaseSettings], error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:  # a check across fields (a model validator): its message names the variables
        return message
    name = loc[0]
    field = cls.model_fields.get(name)
    if field is not None:  # a field without an alias: its variable is the prefix plus its name
        name = f"{cls.model_config.get('env_prefix', '')}{name}".upper()
    where = ".".join([name, *loc[1:]])
    value = error.get("input")
    secret = any(w in where.lower() for w in ("secret", "password"))
    shown = "" if secret or isinstance(value, dict) else f"={_truncate(value)}"
    return f"{where}{shown}: {message}"


def _truncate(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
