"""What the GPU benchmarks read from their host: each GPU's utilization (nvidia-smi), a worker's
process tree and its CPU time (/proc), and the cores next to each GPU (sysfs) to pin a tree to."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class GpuSampler:
    """nvidia-smi's utilization of every GPU of the host, every `every_ms`, timestamped, by GPU
    index (nvidia-smi sees every GPU whatever CUDA_VISIBLE_DEVICES says)."""

    def __init__(self, path: str, every_ms: int = 200) -> None:
        self.path = path
        query = f"nvidia-smi --query-gpu=index,utilization.gpu --format=csv,noheader,nounits -lms {every_ms}"
        self.proc = subprocess.Popen(
            ["bash", "-c", f"{query} | while read l; do echo $(date +%s.%N) $l; done > {path}"]
        )

    def means(self, t0: float, t1: float) -> dict[str, float]:
        per: dict[str, list[float]] = {}
        try:
            rows = Path(self.path).read_text().splitlines()
        except OSError:  # no nvidia-smi (a CPU smoke run)
            return {}
        for row in rows:
            parts = row.replace(",", " ").split()
            if len(parts) == 3 and t0 <= float(parts[0]) <= t1:
                per.setdefault(parts[1], []).append(float(parts[2]))
        return {gpu: round(sum(u) / len(u), 1) for gpu, u in per.items()}

    def close(self) -> None:
        self.proc.terminate()


def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) of every live process."""
    stats: dict[int, tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return stats


def tree(pid: int, stats: dict[int, tuple[int, float]] | None = None) -> set[int]:
    """A process and its live descendants (worker -> engine core -> its helpers)."""
    stats = _proc_stats() if stats is None else stats
    pids = {pid}
    for _ in range(4):
        pids |= {p for p, (parent, _) in stats.items() if parent in pids}
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (the engine cores)."""
    stats = _proc_stats()
    return sum(stats.get(p, (0, 0.0))[1] for p in tree(pid, stats))


def children_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each live descendant of a process, keyed "comm:pid" (vLLM's engine cores
    are "VLLM::EngineCore" processes; the benchmark's broker is "tansu")."""
    stats = _proc_stats()
    out: dict[str, float] = {}
    for p in tree(pid, stats) - {pid}:
        try:
            comm = Path(f"/proc/{p}/comm").read_text().strip()
        except OSError:
            continue
        out[f"{comm}:{p}"] = stats[p][1]
    return out


def _cpulist(text: str) -> set[int]:
    cores: set[int] = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            cores |= set(range(int(lo), int(hi or lo) + 1))
    return cores


def local_cores(gpus: list[int]) -> dict[int, set[int]]:
    """Disjoint sets of allowed cores, each on its GPU's NUMA node (sysfs local_cpulist); GPUs that
    share a node split its cores in halves, in GPU order."""
    rows = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,pci.bus_id", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    bus = {int(i): b.strip()[-12:].lower() for i, b in (r.split(",") for r in rows)}
    allowed = os.sched_getaffinity(0)
    node = {
        g: frozenset(_cpulist(Path(f"/sys/bus/pci/devices/{bus[g]}/local_cpulist").read_text()) & allowed)
        for g in gpus
    }
    cores: dict[int, set[int]] = {}
    for shared in set(node.values()):
        sharing = [g for g in gpus if node[g] == shared]
        ordered = sorted(shared or allowed)
        step = len(ordered) // len(sharing)
        for k, g in enumerate(sharing):
            cores[g] = set(ordered[k * step : (k + 1) * step])
    return cores


def pin(pid: int, cores: set[int]) -> int:
    """Pin every thread of a process tree to cores (as `taskset -a -p`); returns threads pinned.
    Threads and processes started later inherit it."""
    pinned = 0
    for p in tree(pid):
        try:
            tids = [int(t.name) for t in Path(f"/proc/{p}/task").iterdir()]
        except OSError:
            continue
        for t in tids:
            try:
                os.sched_setaffinity(t, cores)
                pinned += 1
            except OSError:
                pass
    return pinned
