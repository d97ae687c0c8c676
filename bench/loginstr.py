"""Logging cost in instructions: one worker process under valgrind's callgrind, logging off vs on.

Instruction counts do not depend on what else the machine is doing, so this measures a cost of a
few per cent that the jobs/s rounds (±15 % from run to run here) cannot resolve. The worker
(instant FakeEngine, the plumbing benchmark's settings) starts under callgrind with counting
off, answers a warm-up of 500 jobs, then counting is switched on (callgrind_control), N jobs are
loaded, and counting is dumped once all N are committed: instructions per job of the whole
process (every thread: the loop, the log writer, librdkafka). Under valgrind the threads run one
at a time and ~50x slower, so batch sizes differ from a native run; both levels run alike.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import kafka, load, topics, wait_committed
from bench.plumbing import bench_job, worker_env

_WARMUP = 500


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def _instructions(out: Path) -> int:
    """Total instructions (Ir) over the dump files callgrind wrote."""
    total = 0
    for dump in out.parent.glob(out.name + "*"):
        match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(errors="replace"), re.M)
        if match:
            total += int(match.group(1))
    return total


def run_once(bootstrap: str, n: int, log_level: str) -> float:
    """Instructions per job of one worker process at `log_level`."""
    s = topics(bootstrap)
    group = f"{s.jobs_topic}-workers"
    load(bootstrap, s.jobs_topic, _WARMUP, bench_job)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as log:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "sluice.cli",
                "--log-level",
                log_level,
                "worker",
            ],
            env=worker_env(s, group),
            stdout=log,
            stderr=log,
        )
        try:
            wait_committed(bootstrap, group, s.jobs_topic, 12, _WARMUP, timeout=900)
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
            load(bootstrap, s.jobs_topic, n, lambda i: bench_job(_WARMUP + i))
            wait_committed(bootstrap, group, s.jobs_topic, 12, _WARMUP + n, timeout=1800)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            time.sleep(1)
        finally:
            proc.terminate()
            proc.wait(300)
        return _instructions(out) / n


def main(n: int = 10_000, rounds: int = 2) -> list[tuple[str, float]]:
    """(level, median instructions per job), WARNING first; levels interleaved."""
    per: dict[str, list[float]] = {"WARNING": [], "INFO": []}
    with kafka() as bootstrap:
        for _ in range(rounds):
            for level in per:
                per[level].append(run_once(bootstrap, n, level))
    return [(level, sorted(v)[len(v) // 2]) for level, v in per.items()]


if __name__ == "__main__":
    results = main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
    for level, ipj in results:
        print(f"{level}: {ipj:,.0f} instructions per job")
    print(f"logging on costs {100 * (results[1][1] / results[0][1] - 1):.2f} % instructions per job")
