"""Several GPUs on one host: one `sluice worker --engine vllm` process per GPU, members of one
consumer group, against one worker alone (run on a lent 2-GPU H200 host through
bench/gpu-device.sh's recipe; Kafka is the Tansu broker there).

Phases, in this order, on one jobs topic of 12 partitions, each on fresh prompts (prefix caching
is off anyway): A, worker 0 alone on GPU 0; B, worker 1 joins on GPU 1 and both share the group;
A', worker 1 stops and worker 0 is alone again. Each phase first answers a warm-up of 64 jobs, then
is timed from its first job started to its last result produced; tok/s = output tokens / that.
Ratio = B / mean(A, A'): the goal is >= 1.9.

    python -m bench.gpu_scale MODEL JOBS_PER_GPU OUT.jsonl
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gpu import ENGINE, log, model_dir, start_tansu, workload


def worker_env(name: str, settings: Any, gpu: int) -> dict[str, str]:
    path = model_dir(name)
    extra = {
        k: v
        for k, v in ENGINE.items()
        if k not in ("dtype", "max_model_len", "gpu_memory_utilization", "max_num_seqs")
    }
    return {
        **os.environ,
        **settings.child_env(),
        "CUDA_VISIBLE_DEVICES": str(gpu),
        "SLUICE_WORKER_GROUP_ID": f"{settings.jobs_topic}-workers",
        "SLUICE_WORKER_WORKER_ID": f"gpu{gpu}",
        "SLUICE_WORKER_ENGINE": "vllm",
        "SLUICE_WORKER_MODEL": str(path),
        "SLUICE_WORKER_SERVED_MODEL_NAMES": "bench",
        "SLUICE_WORKER_MAX_NUM_SEQS": str(ENGINE["max_num_seqs"]),
        "SLUICE_WORKER_MAX_MODEL_LEN": str(ENGINE["max_model_len"]),
        "SLUICE_WORKER_DTYPE": str(ENGINE["dtype"]),
        "SLUICE_WORKER_GPU_MEMORY_UTILIZATION": "0.85",
        "SLUICE_WORKER_ENGINE_ARGS": json.dumps({"tokenizer": str(path / "tokenizer"), **extra}),
        "SLUICE_WORKER_IDEMPOTENCY": "false",
        "SLUICE_LOG_LEVEL": "INFO",  # "partitions assigned" says worker 1 joined
    }


def main() -> None:
    from bench.common import load, topics
    from bench.patterns import read_results
    from sluice.contract import Job, SamplingParams, encode

    name, per_gpu, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def emit(rec: dict[str, Any]) -> None:
        rec = {"model": name, "per_gpu": per_gpu, **rec}
        with open(out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        log("RESULT", json.dumps(rec))

    broker, bootstrap = start_tansu()
    s = topics(bootstrap, partitions=12)
    produced = 0
    seed = [3000]

    def run(tag: str, n: int) -> list[Any]:
        """Produce n jobs tagged `tag` and wait for their results (and every earlier one's)."""
        nonlocal produced
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
        load(bootstrap, s.jobs_topic, n, lambda i: (jobs[i].job_id.encode(), encode(jobs[i])))
        produced += n
        results = read_results(bootstrap, s.results_topic, produced)
        return [(r, ts) for r, ts in results if r.job_id.startswith(f"{tag}-")]

    def timed(phase: str, n: int) -> None:
        run(f"{phase}-warm", 64)
        results = run(phase, n)
        start = min(r.started_at.timestamp() for r, _ in results if r.started_at)
        seconds = max(ts for _, ts in results) - start
        tokens = sum(r.output_tokens for r, _ in results)
        by = {}
        for r, _ in results:
            by[r.worker_id] = by.get(r.worker_id, 0) + 1
        emit(
            {
                "phase": phase,
                "jobs": n,
                "tokens": tokens,
                "seconds": seconds,
                "tok_s": tokens / seconds,
                "by_worker": by,
            }
        )

    cmd = [sys.executable, "-m", "sluice.cli", "worker"]
    workers: list[subprocess.Popen[bytes]] = []

    def start(gpu: int) -> None:
        with open(f"/tmp/worker{gpu}.log", "wb") as log_file:  # the child keeps its own copy
            workers.append(
                subprocess.Popen(cmd, env=worker_env(name, s, gpu), stdout=log_file, stderr=log_file)
            )

    def joined(gpu: int) -> bool:
        return b'"partitions assigned"' in Path(f"/tmp/worker{gpu}.log").read_bytes()

    try:
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
        workers.pop().terminate()
        time.sleep(15)  # worker 1's partitions go back to worker 0
        timed("A2", per_gpu)
        emit({"pattern": "done"})  # bench/gpu-device.sh stops the run on this record
    finally:
        for w in workers:
            w.kill()
        broker.terminate()


if __name__ == "__main__":
    main()
