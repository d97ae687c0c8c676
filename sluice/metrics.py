"""Prometheus metrics. Each service builds its metric set on its own registry (no import-time
registration), and `start_metrics_server` exposes that registry on /metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["SinkMetrics", "WorkerMetrics", "start_metrics_server"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def start_metrics_server(port: int, registry: CollectorRegistry) -> None:
    """Serve `registry` on http://0.0.0.0:<port>/metrics from a daemon thread."""
    start_http_server(port, registry=registry)


@dataclass
class WorkerMetrics:
    """What a worker reports: jobs by outcome, in-flight, commits, latency."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.jobs = Counter("sluice_worker_jobs", "Jobs finished, by status", ["status"], registry=r)
        # Bound once: labels() per job is measurable on the hot path.
        self.job_status = {s: self.jobs.labels(s) for s in ("succeeded", "failed", "expired", "cancelled")}
        self.failures = Counter(
            "sluice_worker_failures", "Jobs that did not succeed, by error code", ["code"], registry=r
        )
        self.dlq = Counter("sluice_worker_dlq", "Messages sent to the DLQ, by reason", ["reason"], registry=r)
        self.in_flight = Gauge("sluice_worker_in_flight", "Jobs admitted and not yet finished", registry=r)
        self.paused = Gauge(
            "sluice_worker_paused", "1 while partitions are paused for backpressure", registry=r
        )
        self.commits = Counter("sluice_worker_commits", "Offset commits sent", registry=r)
        self.rebalances = Counter("sluice_worker_rebalances", "Partition events", ["kind"], registry=r)
        self.generation = Histogram(
            "sluice_worker_generation_seconds",
            "Engine time per job",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "sluice_worker_queue_wait_seconds",
            "Enqueue to start",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.output_tokens = Counter("sluice_worker_output_tokens", "Tokens generated", registry=r)
        self.replayed = Counter(
            "sluice_worker_replayed", "Jobs answered from an earlier result instead of run again", registry=r
        )


@dataclass
class SinkMetrics:
    """What the sink reports: deliveries by outcome, attempts, latency."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.deliveries = Counter(
            "sluice_sink_deliveries",
            "Webhook deliveries finished, by outcome",
            ["outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "sluice_sink_attempts", "HTTP attempts, by result class", ["result"], registry=r
        )
        self.deferred = Counter(
            "sluice_sink_deferred",
            "Deliveries handed to a retry tier, by reason (retry, endpoint_busy, circuit_open)",
            ["reason"],
            registry=r,
        )
        self.dead = Counter(
            "sluice_sink_dead_lettered",
            "Deliveries sent to the delivery DLQ, by reason",
            ["reason"],
            registry=r,
        )
        self.skipped = Counter(
            "sluice_sink_skipped", "Results with no webhook and no subscription", registry=r
        )
        self.in_flight = Gauge("sluice_sink_in_flight", "Deliveries in progress", registry=r)
        self.disabled_endpoints = Gauge(
            "sluice_sink_disabled_endpoints",
            "Webhook endpoints disabled by 410 Gone (by any sink; `sluice endpoints list`)",
            registry=r,
        )
        self.latency = Histogram(
            "sluice_sink_delivery_seconds",
            "Result produced to webhook acknowledged",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
