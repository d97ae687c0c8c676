"""CPU cost of the worker's per-job access line, measured in one process without Kafka.

A loop of fixed CPU work stands in for a job; with logging on, each iteration also adds the
worker's "job done" row to a JobLog and flushes it as the worker does (once per turn of ten
jobs), through configure_logging's writer thread into a file. CPU time of the whole process (the
writer thread included) per iteration, on minus off, is the access line's cost. Rounds are
interleaved, each in a fresh process; the median difference is reported.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

from sluice.logs import JobLog, configure_logging

_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _one(on: bool, n: int) -> float:
    """CPU µs per iteration in this process."""
    with tempfile.TemporaryFile("w") as out:
        writer = configure_logging("bench", "INFO" if on else "WARNING", out)
        jobs = JobLog("sluice.worker.jobs", "job done")
        start = time.process_time()
        for i in range(n):
            x = 0
            for k in range(300):  # stand-in work, a few µs
                x += k
            if jobs.enabled:
                jobs.rows.append(
                    {
                        "job_id": f"job-{i}",
                        "status": "succeeded",
                        "error_code": None,
                        "output_tokens": 16,
                        "traceparent": _TRACEPARENT,
                    }
                )
            if i % 10 == 9:
                jobs.flush()
        jobs.flush(force=True)
        writer.stop()
        return 1e6 * (time.process_time() - start) / n


def main(n: int = 300_000, rounds: int = 5) -> float:
    """Median extra CPU µs per job with the access line on."""
    diffs = []
    for _ in range(rounds):
        us = {}
        for mode in ("off", "on"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.logcost", mode, str(n)],
                check=True,
                capture_output=True,
                text=True,
            )
            us[mode] = float(out.stdout)
        diffs.append(us["on"] - us["off"])
    return statistics.median(diffs)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("on", "off"):
        print(_one(sys.argv[1] == "on", int(sys.argv[2])))
    else:
        print(f"access line: {main():.2f} µs CPU per job")
