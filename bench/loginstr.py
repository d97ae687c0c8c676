"""Logging cost in instructions: one worker process under valgrind's callgrind, logging off vs on.

Instruction counts do not depend on what else the machine is doing, so this measures a cost of a
few per cent that the jobs/s rounds (±15 % from run to run here) cannot resolve. The worker
(instant FakeEngine, the plumbing benchmark's settings) starts under callgrind with counting
off, answers a warm-up of 500 jobs, then counting is switched on (callgrind_control), N jobs are
loaded, and counting is dumped once all N are committed: instructions per job of the whole
process (every thread: the loop, the log writer, librdkafka). Under valgrind the threads run one
at a time and ~50x slower, so batch sizes differ from a native run; both levels run alike.
Instructions are not time: cache misses and hand-offs between threads cost time that no
instruction count shows, which is why the plumbing section measures CPU time as well.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import kafka, load, topics, wait_committed
from bench.plumbing import bench_job, worker_env

_WARMUP = 500


def _instructions(out: Path) -> int:
    """Instructions (Ir) in the dumps that callgrind_control asked for (out.1, out.2, ...), not the
    one written at exit, which would add the shutdown."""
    total = 0
    for dump in out.parent.glob(out.name + ".*"):
        match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(errors="replace"), re.M)
        if match:
            total += int(match.group(1))
    if not total:
        raise RuntimeError(f"no callgrind dump next to {out}")
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


LEVELS = {
    "WARNING": "logging off (WARNING)",
    "INFO": 'the default INFO (the columnar "jobs done" access log)',
    "DEBUG": "DEBUG (plus one LogRecord line per job)",
}


def main(n: int = 20_000, rounds: int = 2) -> list[str]:
    """Table rows: instructions per job per level, levels interleaved, WARNING the baseline."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench/loginstr.py needs valgrind with callgrind_control (apt-get install valgrind)")
    per: dict[str, list[float]] = {level: [] for level in LEVELS}
    with kafka() as bootstrap:
        for _ in range(rounds):
            for level in LEVELS:
                per[level].append(run_once(bootstrap, n, level))
    base = statistics.median(per["WARNING"])
    rows = []
    for level, label in LEVELS.items():
        med = statistics.median(per[level])
        runs = " / ".join(f"{x:,.0f}" for x in per[level])
        cost = "" if level == "WARNING" else f"{100 * (med / base - 1):+.2f} %"
        rows.append(f"| {label} | {n:,} | {runs} | **{med:,.0f}** | {cost} |")
    return rows


if __name__ == "__main__":
    print("\n".join(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)))
