"""Several GPUs on one host: one `sluice worker --engine vllm` process per GPU, members of one
consumer group, against one worker alone (run on a lent 2-GPU H200 host through
bench/gpu-device.sh's recipe; Kafka is the Tansu broker there).

Phases, in this order, on one jobs topic of 12 partitions, each on fresh prompts (prefix caching
is off anyway): A, worker 0 alone on GPU 0; B, worker 1 joins on GPU 1 and both share the group;
A', worker 1 stops and worker 0 is alone again; then (BENCH_DP=1) DP, worker 0 stops and one worker
drives both GPUs through vLLM's data parallelism (data_parallel_size 2: one frontend, one engine
core per GPU). Each phase first answers a warm-up of WARM jobs (not counted: an engine's first
full-width batches are slower, seen as a first phase at half the rate of a later one), then its jobs
are produced at once; tok/s = output tokens / (first job started -> last result), a finite backlog,
drain included, which ends when the busiest worker does. Ratio = B / mean(A, A'): the goal is
>= 1.9. Each phase also records each worker process tree's CPU seconds (frontend + engine core) and
every GPU's mean utilization (nvidia-smi, 200 ms). BENCH_CYCLES=K instead keeps both workers up, each
on topics and a group of its own, and alternates A (worker 0 busy) and B (both busy) K times, for
a ratio per cycle free of engine starts and of one slow phase. BENCH_PIN=1 starts each worker on its GPU's own
cores (bench.gpu_host.local_cores), as a Kubernetes node's CPU and topology managers would.

    python -m bench.gpu_scale MODEL JOBS_PER_GPU OUT.jsonl
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.gpu import ENGINE, emitter, full_batch, model_dir, start_tansu, workload
from bench.gpu_host import GpuSampler, cpu_seconds, local_cores


def rates(results: list[Any]) -> dict[str, Any]:
    """tok/s of one phase's results ((Result, landed_at) pairs)."""
    start = min(r.started_at.timestamp() for r, _ in results if r.started_at)
    end = max(ts for _, ts in results)
    tokens = sum(r.output_tokens for r, _ in results)
    last_start: dict[str, float] = {}
    for r, _ in results:
        if r.started_at:
            last_start[r.worker_id] = max(last_start.get(r.worker_id, 0.0), r.started_at.timestamp())
    return {
        "tokens": tokens,
        "seconds": end - start,
        "tok_s": tokens / (end - start),
        "last_start_s": {w: round(t - start, 2) for w, t in last_start.items()},
        "drain_s": end - max(last_start.values()),
    }


WARM = int(os.environ.get("BENCH_WARM", "600"))
CYCLES = int(os.environ.get("BENCH_CYCLES", "0"))
SMOKE = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))


def worker_env(name: str, settings: Any, gpu: int, dp: dict[str, Any] | None = None) -> dict[str, str]:
    path = model_dir(name)
    extra = (dp or {}) | {
        k: v
        for k, v in ENGINE.items()
        if k not in ("dtype", "max_model_len", "gpu_memory_utilization", "max_num_seqs")
    }
    return {
        **os.environ,
        **settings.child_env(),
        "CUDA_VISIBLE_DEVICES": "0,1" if dp else str(gpu),
        "SLUICE_WORKER_GROUP_ID": f"{settings.jobs_topic}-workers",
        "SLUICE_WORKER_WORKER_ID": f"gpu{gpu}",
        "SLUICE_WORKER_ENGINE": os.environ.get("BENCH_ENGINE", "vllm"),
        "SLUICE_WORKER_MODEL": str(path),
        "SLUICE_WORKER_SERVED_MODEL_NAMES": "bench",
        "SLUICE_WORKER_MAX_NUM_SEQS": str(ENGINE["max_num_seqs"]),
        "SLUICE_WORKER_MAX_MODEL_LEN": str(ENGINE["max_model_len"]),
        "SLUICE_WORKER_DTYPE": str(ENGINE["dtype"]),
        "SLUICE_WORKER_GPU_MEMORY_UTILIZATION": "0.85",
        "SLUICE_WORKER_ENGINE_ARGS": json.dumps({"tokenizer": str(path / "tokenizer"), **extra}),
        "SLUICE_WORKER_IDEMPOTENCY": "false",
        "SLUICE_LOG_LEVEL": "INFO",  # "partitions assigned" says worker 1 joined
        # Two engines behind one worker: twice one GPU's jobs in flight, as two workers would hold.
        **({"SLUICE_WORKER_MAX_IN_FLIGHT": str(4 * ENGINE["max_num_seqs"])} if dp else {}),
    }


def main() -> None:  # noqa: C901 (one run's phases, in order)
    from bench.common import load, topics
    from bench.patterns import read_results
    from sluice.contract import Job, SamplingParams, encode

    name, per_gpu, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    emit = emitter(out, model=name, per_gpu=per_gpu)

    # A smoke run here: the local broker, and BENCH_ENGINE=fake for workers without a GPU.
    broker, bootstrap = (None, os.environ["KAFKA_BOOTSTRAP_SERVERS"]) if SMOKE else start_tansu()
    s = topics(bootstrap, partitions=12)
    produced: dict[str, int] = {}
    seed = [3000]

    def run(tag: str, n: int, st: Any = s) -> list[Any]:
        """Produce n jobs tagged `tag` to st's jobs topic and wait for their results (and every
        earlier one's)."""
        seed[0] += 1
        jobs = [
            Job(
                job_id=f"{tag}-{i}",
                model="bench",
                prompt=p,
                sampling=SamplingParams(max_tokens=m, temperature=0.8),
            )
            for i, (p, m) in enumerate(workload(name, n, seed=seed[0]))
        ]
        load(bootstrap, st.jobs_topic, n, lambda i: (jobs[i].job_id.encode(), encode(jobs[i])))
        produced[st.jobs_topic] = produced.get(st.jobs_topic, 0) + n
        results = read_results(bootstrap, st.results_topic, produced[st.jobs_topic])
        return [(r, ts) for r, ts in results if r.job_id.startswith(f"{tag}-")]

    def run_each(tag: str, n: int, sets: list[Any]) -> list[Any]:
        """run() on every topic set at once (one thread each), results together."""
        with ThreadPoolExecutor(len(sets)) as pool:
            return [r for part in pool.map(lambda st: run(tag, n, st), sets) for r in part]

    gpus = GpuSampler("/tmp/gpu-scale-util.txt")
    cmd = [sys.executable, "-m", "sluice.cli", "worker"]
    workers: dict[int, subprocess.Popen[bytes]] = {}

    def timed(phase: str, n: int, sets: list[Any] | None = None, warm: int = WARM) -> None:
        """One phase: n jobs (per topic set, `sets` at once; default the group's one)."""
        sets = sets or [s]
        if warm:
            run_each(f"warm-{phase}", warm, sets)
        cpu0 = {g: cpu_seconds(w.pid) for g, w in workers.items()}
        t0 = time.time()
        results = run_each(phase, n, sets)
        t1 = time.time()
        by: dict[str, int] = {}
        tokens_by: dict[str, int] = {}
        for r, _ in results:
            by[r.worker_id] = by.get(r.worker_id, 0) + 1
            tokens_by[r.worker_id] = tokens_by.get(r.worker_id, 0) + r.output_tokens
        busy = len(sets) if CYCLES else len(workers)  # engines sharing this phase's backlog
        emit(
            {
                "phase": phase,
                "jobs": n * len(sets),
                **rates(results),
                **full_batch([(ts, r.output_tokens) for r, ts in results], t0, busy),
                "by_worker": by,
                "tokens_by_worker": tokens_by,
                "cpu_cores_by_worker": {
                    f"gpu{g}": round((cpu_seconds(w.pid) - cpu0[g]) / (t1 - t0), 2)
                    for g, w in workers.items()
                },
                "gpu_util": gpus.means(t0, t1),
            }
        )

    # BENCH_PIN=1: each worker (and the engine core it starts) runs on its GPU's own cores only.
    cores = local_cores([0, 1]) if os.environ.get("BENCH_PIN", "0") == "1" else {}
    if cores:
        emit({"phase": "pinned", "cores": {f"gpu{g}": sorted(c) for g, c in cores.items()}})

    def start(gpu: int, engine_args: dict[str, Any] | None = None, st: Any = s) -> None:
        mine = cores.get(gpu, set().union(*cores.values()) if cores else set())
        with open(f"/tmp/worker{gpu}.log", "wb") as log_file:  # the child keeps its own copy
            env = worker_env(name, st, gpu, engine_args)
            workers[gpu] = subprocess.Popen(
                cmd,
                env=env,
                stdout=log_file,
                stderr=log_file,
                preexec_fn=(lambda: os.sched_setaffinity(0, mine)) if mine else None,
            )

    def cycles() -> None:
        """BENCH_CYCLES=K: both workers up all along, each on its own topics and group; phases A
        (worker 0's topics only) and B (both at once) alternate K times, so every B has an A on
        either side of it and neither pays an engine start."""
        other = topics(bootstrap, partitions=12)
        start(0)
        start(1, st=other)
        run_each("first", 1, [s, other])
        run_each("warm", WARM, [s, other])
        for k in range(CYCLES):
            timed(f"A{k}", per_gpu, [s], warm=0)
            timed(f"B{k}", per_gpu, [s, other], warm=0)
        timed(f"A{CYCLES}", per_gpu, [s], warm=0)
        emit({"pattern": "done"})

    def joined(gpu: int) -> bool:
        return b'"partitions assigned"' in Path(f"/tmp/worker{gpu}.log").read_bytes()

    def stop(gpu: int) -> None:
        w = workers.pop(gpu)
        w.terminate()
        w.wait(120)

    try:
        if CYCLES:
            cycles()
            return
        t = time.time()
        start(0)
        run("first", 1)
        emit({"phase": "start-to-first-result", "seconds": time.time() - t})
        timed("A", per_gpu)
        start(1)
        deadline = time.time() + 600
        while not joined(1) and time.time() < deadline:
            time.sleep(1)
        time.sleep(5)  # the group settles: worker 0 gives up half its partitions
        timed("B", 2 * per_gpu)
        stop(1)
        time.sleep(15)  # worker 1's partitions go back to worker 0
        timed("A2", per_gpu)
        if os.environ.get("BENCH_DP", "0") == "1":
            stop(0)
            t = time.time()
            start(2, {"data_parallel_size": 2})
            run("dp-first", 1)
            emit({"phase": "dp-start-to-first-result", "seconds": time.time() - t})
            timed("DP", 2 * per_gpu)
        emit({"pattern": "done"})  # bench/gpu-device.sh stops the run on this record
    finally:
        for w in workers.values():
            w.kill()
        gpus.close()
        if broker is not None:
            broker.terminate()


if __name__ == "__main__":
    main()
