"""The host's own ceiling for two GPUs: vLLM's offline LLM.generate, one process per GPU, alone and
side by side, with no Sluice and no Kafka (run on a lent 2-GPU H200 host through
bench/gpu-device.sh: BENCH=gpu_pair).

bench/gpu_scale.py measures two Sluice workers against one; on the small, engine-step-bound shape
that ratio fell short of 2x. This says how much of that the host takes from any two engines: two
child processes (CUDA_VISIBLE_DEVICES 0 and 1) load the same engine settings as bench/gpu.py
(gpu_memory_utilization 0.85 each, prefix caching off) and warm up on 600 prompts; then, on a go
file from this parent, phases A (child 0 alone), B (both at once, each its own fresh prompts) and
A' (child 0 alone again) each generate JOBS prompts per GPU at once. Ratio = B / mean(A, A'). Then
every thread of each child's tree (the LLM's process and its engine core) is pinned to its GPU's own
cores (bench.gpu_host.local_cores) and the three phases run again (Ap, Bp, A2p): how much of the
side-by-side loss is the two engines' threads sharing the host's cores. Each phase also records
each child tree's CPU cores and each GPU's utilization.

    python -m bench.gpu_pair MODEL JOBS_PER_GPU OUT.jsonl
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.gpu import ENGINE, emitter, model_dir, workload
from bench.gpu_host import GpuSampler, cpu_seconds, local_cores, pin

GO = Path("/tmp/gpu-pair")
PHASES = ("A", "B", "A2", "Ap", "Bp", "A2p")


def child(name: str, gpu: int, n: int) -> None:
    """Load one engine, say ready, then run each phase this parent starts with a go file."""
    from vllm import LLM
    from vllm import SamplingParams as VSP

    path = model_dir(name)
    engine = ENGINE | ({"gpu_memory_utilization": 0.85} if "gpu_memory_utilization" in ENGINE else {})
    llm = LLM(model=str(path), tokenizer=str(path / "tokenizer"), **engine)
    warm = workload(name, 600, seed=7)
    llm.generate([p for p, _ in warm], [VSP(max_tokens=32) for _ in warm], use_tqdm=False)
    (GO / f"ready-{gpu}").touch()
    for phase in PHASES:
        if not phase.startswith("B") and gpu != 0:
            continue
        while not (GO / f"go-{phase}").exists():
            time.sleep(0.01)
        work = workload(name, n, seed=5000 + 10 * gpu + PHASES.index(phase))
        params = [VSP(max_tokens=m, temperature=0.8) for _, m in work]
        t = time.perf_counter()
        outs = llm.generate([p for p, _ in work], params, use_tqdm=False)
        dt = time.perf_counter() - t
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        result = {"gpu": gpu, "phase": phase, "tokens": tokens, "seconds": dt, "tok_s": tokens / dt}
        (GO / f"done-{phase}-{gpu}").write_text(json.dumps(result))


def main() -> None:
    name, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    emit = emitter(out, model=name, per_gpu=n)

    GO.mkdir(parents=True, exist_ok=True)
    for f in GO.iterdir():
        f.unlink()
    model_dir(name)  # written once here, not by both children at once
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.gpu_pair", "--child", name, str(gpu), str(n)],
            env={**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)},
        )
        for gpu in (0, 1)
    ]
    sampler = GpuSampler("/tmp/gpu-pair-util.txt")
    try:
        while not all((GO / f"ready-{g}").exists() for g in (0, 1)):
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("an engine process exited before it was ready")
            time.sleep(1)
        for phase in PHASES:
            if phase == "Ap":
                cores = local_cores([0, 1])
                threads = {g: pin(p.pid, cores[g]) for g, p in enumerate(procs)}
                named = {f"gpu{g}": sorted(c) for g, c in cores.items()}
                emit({"phase": "pinned", "cores": named, "threads": threads})
            gpus = (0, 1) if phase.startswith("B") else (0,)
            time.sleep(3)
            cpu0 = {g: cpu_seconds(procs[g].pid) for g in gpus}
            t0 = time.time()
            (GO / f"go-{phase}").touch()
            files = [GO / f"done-{phase}-{g}" for g in gpus]
            while not all(f.exists() for f in files):
                if any(procs[g].poll() is not None for g in gpus):  # GPU 1's child ends after Bp
                    raise RuntimeError(f"an engine process exited in phase {phase}")
                time.sleep(0.2)
            t1 = time.time()
            parts = [json.loads(f.read_text()) for f in files]
            used = {f"gpu{g}": (cpu_seconds(procs[g].pid) - cpu0[g]) / (t1 - t0) for g in gpus}
            emit(
                {
                    "phase": phase,
                    "tok_s": sum(p["tok_s"] for p in parts),
                    "per_gpu_runs": parts,
                    "cpu_cores": {g: round(c, 2) for g, c in used.items()},
                    "gpu_util": sampler.means(t0, t1),
                }
            )
        emit({"pattern": "done"})  # bench/gpu-device.sh stops the run on this record
    finally:
        for p in procs:
            p.kill()
        sampler.close()


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
