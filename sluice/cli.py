"""`sluice` command line: each subcommand is a thin call into a service module.

    sluice broker                  run a local Kafka broker (KRaft) until Ctrl-C
    sluice topics create           create/check every topic (sluice/topics.py lists them)
    sluice submit                  submit one job from flags or --json
    sluice submit-file FILE.jsonl  submit a file of jobs, reporting bad lines
    sluice worker                  run one worker (consumer-group member)
    sluice sink                    run the webhook sink
    sluice api                     the HTTP API: POST /v1/jobs (submit), GET /v1/jobs/{id} (result,
                                   pending or 404; ?wait= long-polls)
    sluice dlq list|replay         dead letters of jobs or webhook deliveries (filters: job id,
                                   endpoint, time range)
    sluice endpoints list|enable   webhook endpoints disabled by 410 Gone; enable one again
    sluice keys create|list|revoke API keys of the gateway: create prints the new key once
    sluice batch submit|status|cancel|download   OpenAI-style batches through the gateway
    sluice receiver                run a local webhook receiver that verifies signatures

Settings come from SLUICE_* environment variables (see sluice/settings.py); flags override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from sluice.errors import BackpressureError, ConfigError, ContractError, PermanentError, SluiceError

__all__ = ["main"]


def _cache_dir() -> Path:
    from sluice.settings import CliSettings, load

    return load(CliSettings).cache_dir.absolute()


def _overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def cmd_broker(args: argparse.Namespace) -> int:
    from sluice.broker import free_port, start_cluster

    # The JVMs run in sessions of their own (so Ctrl-C reaches us first): a supervisor's SIGTERM, a
    # closed terminal's SIGHUP or Ctrl-C must all stop them, or they outlive us holding their ports.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    if args.nodes < 1:
        print(f"error: --nodes must be at least 1, got {args.nodes}", file=sys.stderr)
        return 2
    ports = [args.port or free_port()] + [free_port() for _ in range(args.nodes - 1)]
    cluster = start_cluster(_cache_dir(), args.nodes, ports=ports)
    try:
        logs = ", ".join(str(node.log_path) for node in cluster.nodes)
        what = "Kafka" if args.nodes == 1 else f"Kafka cluster of {args.nodes} nodes"
        print(f"{what} {cluster.bootstrap_servers} ready (logs: {logs}); Ctrl-C stops it", flush=True)
        print(f"export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap_servers}", flush=True)
        if cluster.replication_factor > 1:
            print(f"export SLUICE_REPLICATION_FACTOR={cluster.replication_factor}", flush=True)
        while all(node.process.poll() is None for node in cluster.nodes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from sluice.kafka import create_topics
    from sluice.settings import SinkSettings, load
    from sluice.topics import delivery_specs, gateway_specs, pipeline_specs

    # Every topic: the sink's (its retry tiers follow SLUICE_SINK_RETRY_SCHEDULE) and the gateway's too.
    settings = load(SinkSettings, **_overrides(args, ["jobs_partitions"]))
    specs = pipeline_specs(settings) + delivery_specs(settings, settings.retry_schedule)
    unique = {spec.name: spec for spec in specs + gateway_specs(settings)}  # the events topic is in both
    reports = create_topics(settings, list(unique.values()))
    for r in reports:
        print(f"{r.name}: {r.status}{' - ' + r.detail if r.detail else ''}")
    return 1 if any(r.status == "mismatch" for r in reports) else 0


def _job_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = orjson.loads(args.json) if args.json else {}
    for name in ("job_id", "model", "prompt", "webhook_url", "tenant", "priority", "deadline"):
        if getattr(args, name) is not None:
            spec[name] = getattr(args, name)
    sampling = {n: getattr(args, n) for n in ("max_tokens", "temperature", "top_p", "seed")}
    sampling = {k: v for k, v in sampling.items() if v is not None}
    if args.stop:
        sampling["stop"] = args.stop
    if sampling:
        spec["sampling"] = {**spec.get("sampling", {}), **sampling}
    return spec


def cmd_submit(args: argparse.Namespace) -> int:
    from producer import JobProducer
    from sluice.settings import ProducerSettings, load

    spec = _job_from_flags(args)
    with JobProducer(load(ProducerSettings)) as producer:
        done = producer.submit(spec, traceparent=args.traceparent).result(timeout=60)
    print(orjson.dumps(dataclasses.asdict(done)).decode())
    return 0


def cmd_submit_file(args: argparse.Namespace) -> int:
    from producer import JobProducer, submit_file
    from sluice.settings import ProducerSettings, load

    manifest = None if args.manifest is None else Path(args.manifest)
    with JobProducer(load(ProducerSettings)) as producer:
        summary = submit_file(
            producer, Path(args.file), default_model=args.model, keep_ids=False, manifest=manifest
        )
    print(summary.describe())
    if manifest is not None:
        print(f"manifest: {manifest} (sluice collect {manifest} --out results.jsonl)")
    return 0 if not summary.bad_lines else 2


def cmd_collect(args: argparse.Namespace) -> int:
    from producer import Manifest, collect
    from sluice.settings import KafkaSettings, load

    manifest = Manifest.load(Path(args.manifest))
    out = Path(args.out)
    errors = Path(args.errors) if args.errors else out.with_name(f"{out.stem}.errors{out.suffix}")
    with out.open("wb") as good, errors.open("wb") as bad:
        summary = collect(load(KafkaSettings), manifest, good, bad, timeout_s=args.timeout)
    print(summary.describe())
    print(f"succeeded: {out}; failed, expired and rejected: {errors}")
    return 0 if not summary.missing else 3


def cmd_worker(args: argparse.Namespace) -> int:
    from consumer import run_worker
    from sluice.settings import WorkerSettings, load

    names = [
        "group_id",
        "worker_id",
        "metrics_port",
        "engine",
        "model",
        "fake_latency_s",
        "fake_tokens_per_s",
        "batch_size",
    ]
    return run_worker(load(WorkerSettings, **_overrides(args, names)))


def cmd_sink(args: argparse.Namespace) -> int:
    from results_sink import run_sink
    from sluice.settings import SinkSettings, load

    overrides = _overrides(args, ["group_id", "metrics_port"])
    if args.webhook_secret:
        overrides["webhook_secrets"] = args.webhook_secret
    return run_sink(load(SinkSettings, **overrides))


def cmd_receiver(args: argparse.Namespace) -> int:
    from results_sink import decode_secret, start_receiver
    from sluice.settings import SinkSettings, load

    secrets = args.webhook_secret or [
        secret.get_secret_value() for secret in load(SinkSettings).webhook_secrets
    ]
    receiver = start_receiver([decode_secret(s) for s in secrets], port=args.port)
    print(f"receiving on {receiver.url}; GET / for stats; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        receiver.stop()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from gateway import run_api
    from sluice.settings import ApiSettings, load

    return run_api(load(ApiSettings, **_overrides(args, ["host", "port", "store_path"])))


def cmd_dlq(args: argparse.Namespace) -> int:
    from results_sink.dlq import list_dlq, parse_filter, replay_dlq
    from sluice.settings import SinkSettings, load

    settings = load(SinkSettings)
    flt = parse_filter(args.job_id, args.endpoint, args.since, args.until)
    if args.action == "list":
        entries = list_dlq(settings, args.kind, flt)
    else:
        if flt.empty() and not args.all:
            print(
                "error: replay needs a filter (--job-id, --endpoint, --since/--until) or --all",
                file=sys.stderr,
            )
            return 2
        entries = replay_dlq(settings, args.kind, flt, dry_run=args.dry_run)
    for e in entries:
        print(orjson.dumps(e.summary()).decode())
    verb = "listed" if args.action == "list" else ("would replay" if args.dry_run else "replayed")
    print(f"{verb} {len(entries)} {args.kind} dead letter(s)", file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sluice.settings import ProducerSettings, load
    from sluice.status import collect, table

    settings = load(ProducerSettings)
    pools = collect(settings, settings.worker_group_id, args.namespace)
    if args.json:
        print(orjson.dumps([p.as_dict() for p in pools], option=orjson.OPT_INDENT_2).decode())
    else:
        print(table(pools))
    return 0


def cmd_endpoints(args: argparse.Namespace) -> int:
    from results_sink.disabled import enable_endpoint, read_disabled
    from sluice.settings import SinkSettings, load

    settings = load(SinkSettings)
    if args.action == "list":
        disabled = read_disabled(settings)
        for url, why in sorted(disabled.items()):
            print(orjson.dumps({"url": url, "reason": why}).decode())
        print(f"{len(disabled)} disabled endpoint(s)", file=sys.stderr)
        return 0
    if not args.url:
        print("error: enable needs the endpoint's URL", file=sys.stderr)
        return 2
    if not enable_endpoint(settings, args.url):
        print(f"error: {args.url} is not disabled", file=sys.stderr)
        return 1
    print(
        f"enabled {args.url}; replay its dead letters with: sluice dlq replay --endpoint URL", file=sys.stderr
    )
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from gateway.keys import create_key, list_keys, revoke_key
    from sluice.settings import KafkaSettings, load

    settings = load(KafkaSettings)
    if args.action == "create":
        if not args.tenant:
            print("error: create needs --tenant NAME", file=sys.stderr)
            return 2
        token, key = create_key(settings, args.tenant, args.max_in_flight, args.rpm)
        print(token, flush=True)  # the only line on stdout: the key, shown this once
        print(f"created key {key.id} for tenant {key.tenant}; it is not shown again", file=sys.stderr)
        return 0
    if args.action == "list":
        for key in list_keys(settings):
            print(orjson.dumps(key.summary()).decode())
        return 0
    if not args.id:
        print("error: revoke needs the key's id (sluice keys list shows them)", file=sys.stderr)
        return 2
    if revoke_key(settings, args.id) is None:
        print(f"error: no live key {args.id!r}", file=sys.stderr)
        return 1
    print(f"revoked key {args.id}; every gateway refuses it within a second", file=sys.stderr)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from producer.batches import BatchClient
    from sluice.settings import CliSettings, load

    settings = load(CliSettings)
    key = args.api_key or (settings.api_key.get_secret_value() if settings.api_key else "")
    client = BatchClient(args.api_url or settings.api_url, key)
    try:
        if args.action == "submit":
            if not args.target:
                print("error: submit needs the input FILE", file=sys.stderr)
                return 2
            batch = client.submit(Path(args.target), args.endpoint, args.completion_window)
            print(batch["id"], flush=True)
            if args.wait:
                batch = client.wait(batch["id"])
        elif not args.target:
            print(f"error: {args.action} needs the batch id", file=sys.stderr)
            return 2
        elif args.action == "status":
            batch = client.wait(args.target) if args.wait else client.status(args.target)
        elif args.action == "cancel":
            batch = client.cancel(args.target)
        else:
            out = Path(args.out or f"{args.target}_output.jsonl")
            errors = Path(args.errors or out.with_name(f"{out.stem}.errors{out.suffix}"))
            written = client.download(args.target, out, errors)
            print(
                f"output: {out} ({written[0]} bytes); errors: {errors} ({written[1]} bytes)", file=sys.stderr
            )
            return 0
    finally:
        client.close()
    counts = batch.get("request_counts") or {}
    print(f"{batch['id']}: {batch['status']} {counts}", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sluice", description="LLM inference through Kafka")
    p.add_argument("--log-level", help="DEBUG, INFO (default: SLUICE_LOG_LEVEL or INFO), WARNING, ERROR")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    b = add("broker", cmd_broker, "run a local Kafka broker (or --nodes 3: a local KRaft cluster)")
    b.add_argument("--port", type=int, help="the first node's client port (default: a free one)")
    b.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="nodes of a static KRaft quorum; 3 gives replication 3 and min.insync.replicas 2",
    )
    topics = add("topics", cmd_topics, "manage topics")
    topics.add_argument("action", choices=["create"])
    topics.add_argument("--partitions", dest="jobs_partitions", type=int)

    s = add("submit", cmd_submit, "submit one job")
    s.add_argument("--json", help="the job as a JSON object; flags override its fields")
    for name in ("job-id", "model", "prompt", "webhook-url", "tenant", "priority", "deadline", "traceparent"):
        s.add_argument(f"--{name}")
    s.add_argument("--max-tokens", type=int)
    s.add_argument("--temperature", type=float)
    s.add_argument("--top-p", type=float)
    s.add_argument("--seed", type=int)
    s.add_argument("--stop", action="append")

    f = add("submit-file", cmd_submit_file, "submit a JSONL file of jobs")
    f.add_argument("file")
    f.add_argument("--model", help="model for lines that name none")
    f.add_argument("--manifest", help="write what `sluice collect` needs to gather the results here")

    c = add("collect", cmd_collect, "write the results of a submitted file (see submit-file --manifest)")
    c.add_argument("manifest")
    c.add_argument("--out", required=True, help="JSONL of succeeded results")
    c.add_argument("--errors", help="JSONL of the rest (default: <out>.errors.jsonl)")
    c.add_argument("--timeout", type=float, help="seconds to wait for missing results (default: no limit)")

    w = add("worker", cmd_worker, "run a worker")
    for name in ("group-id", "worker-id", "model"):
        w.add_argument(f"--{name}")
    w.add_argument("--engine", choices=["fake", "vllm"])
    w.add_argument("--metrics-port", type=int)
    w.add_argument("--batch-size", type=int)
    w.add_argument("--fake-latency-s", type=float)
    w.add_argument("--fake-tokens-per-s", type=float)

    k = add("sink", cmd_sink, "run the webhook sink")
    k.add_argument("--group-id")
    k.add_argument("--metrics-port", type=int)
    k.add_argument("--webhook-secret", action="append", help="repeat while rotating: new first")

    a = add("api", cmd_api, "the HTTP API: POST /v1/jobs, GET /v1/jobs/{id}")
    a.add_argument("--host")
    a.add_argument("--port", type=int)
    a.add_argument("--store-path", type=Path)

    d = add("dlq", cmd_dlq, "list or replay dead letters (jobs or webhook deliveries)")
    d.add_argument("action", choices=["list", "replay"])
    d.add_argument("--kind", choices=["jobs", "deliveries"], default="deliveries")
    d.add_argument("--job-id", action="append", help="repeatable")
    d.add_argument("--endpoint", help="webhook URL (deliveries only)")
    d.add_argument("--since", help="ISO time, e.g. 2026-11-23T08:00 (UTC unless an offset is given)")
    d.add_argument("--until", help="ISO time")
    d.add_argument("--all", action="store_true", help="replay without a filter")
    d.add_argument("--dry-run", action="store_true")

    e = add("endpoints", cmd_endpoints, "list webhook endpoints disabled by 410 Gone, or enable one again")
    e.add_argument("action", choices=["list", "enable"])
    e.add_argument("url", nargs="?", help="the endpoint to enable")

    b = add("batch", cmd_batch, "OpenAI-style batches through the gateway: submit, status, cancel, download")
    b.add_argument("action", choices=["submit", "status", "cancel", "download"])
    b.add_argument("target", nargs="?", help="the input file (submit) or the batch id")
    b.add_argument(
        "--endpoint", default="/v1/chat/completions", choices=["/v1/chat/completions", "/v1/completions"]
    )
    b.add_argument("--completion-window", default="24h")
    b.add_argument("--wait", action="store_true", help="follow it with a progress bar until it ends")
    b.add_argument("--out", help="download: the output file (default <batch id>_output.jsonl)")
    b.add_argument("--errors", help="download: the error file (default <out>.errors.jsonl)")
    b.add_argument("--api-url", help="the gateway (default SLUICE_API_URL or http://127.0.0.1:8080)")
    b.add_argument("--api-key", help="default SLUICE_API_KEY")

    ks = add("keys", cmd_keys, "API keys of the gateway: create (printed once), list, revoke")
    ks.add_argument("action", choices=["create", "list", "revoke"])
    ks.add_argument("id", nargs="?", help="the key to revoke")
    ks.add_argument("--tenant", help="the tenant the key acts for (create)")
    ks.add_argument("--max-in-flight", type=int, help="at most this many of its jobs unanswered")
    ks.add_argument("--rpm", type=int, help="at most this many requests a minute")

    st = add("status", cmd_status, "worker pools: pods, autoscaler, lag per partition, holders, oldest job")
    st.add_argument("--namespace", help="read the pools from Kubernetes (the chart's ScaledObjects) here")
    st.add_argument("--json", action="store_true", help="JSON instead of a table")

    r = add("receiver", cmd_receiver, "run a local webhook receiver")
    r.add_argument("--port", type=int, default=8787)
    r.add_argument("--webhook-secret", action="append")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sluice` console script."""
    from sluice.logs import configure_logging
    from sluice.settings import CliSettings, load

    args = _parser().parse_args(argv)
    try:
        level = args.log_level or load(CliSettings).log_level
    except ConfigError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    listener = configure_logging(f"sluice-{args.command}", level)
    try:
        code: int = args.fn(args)
        return code
    except ContractError as exc:
        print(f"error: invalid job ({exc.code}): {exc}", file=sys.stderr)
        return 2
    except BackpressureError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except SluiceError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2 if isinstance(exc, PermanentError) else 1
    finally:
        listener.stop()


if __name__ == "__main__":
    sys.exit(main())
