"""CPU cost of the worker's access log, measured in one process without Kafka.

A loop of fixed CPU work stands in for a job. With the access log on, each iteration also adds
the worker's row to its "jobs done" JobLog and flushes it as the worker does (once per turn of
ten jobs), through configure_logging's writer thread into a file. For comparison, the same with
an ordinary `logging` call per job (a LogRecord each, formatted by the same writer thread).

Blocks of 20,000 iterations alternate between the modes in one process, each block with a fresh
writer that is stopped (all its lines written) before the block's CPU time is read: process CPU
time, so the writer thread counts. Alternating short blocks keeps the machine's slow and fast
phases out of the difference; the median over the block pairs is reported with its quartiles.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from typing import IO

from consumer.worker import ACCESS_FIELDS
from sluice.logs import JobLog, configure_logging

_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
_N = 20_000
MODES = ("off", "columnar", "record")


def _block(mode: str, job_ids: list[str], out: IO[str]) -> float:
    """CPU µs per iteration of one block."""
    writer = configure_logging("bench", "WARNING" if mode == "off" else "INFO", out)
    jobs = JobLog("sluice.worker.jobs", "jobs done", ACCESS_FIELDS)
    per_record = mode == "record"
    log = logging.getLogger("sluice.worker.jobs")
    add_id, add_status, add_code, add_tokens, add_traceparent = (c.append for c in jobs.columns)
    start = time.process_time()
    for i in range(_N):
        x = 0
        for k in range(300):  # stand-in work, a few µs
            x += k
        if per_record:
            log.info(
                "job done",
                extra={
                    "job_id": job_ids[i],
                    "status": "succeeded",
                    "error_code": None,
                    "output_tokens": 16,
                    "traceparent": _TRACEPARENT,
                },
            )
        elif jobs.enabled:  # as consumer.worker.Worker._publish does
            add_id(job_ids[i])
            add_status("succeeded")
            add_code(None)
            add_tokens(16)
            add_traceparent(_TRACEPARENT)
        if i % 10 == 9:
            jobs.flush()
    jobs.flush(force=True)
    writer.stop()
    elapsed = time.process_time() - start
    logging.getLogger().handlers.clear()
    return 1e6 * elapsed / _N


def main(pairs: int = 40) -> dict[str, tuple[float, float, float]]:
    """Per mode other than off: extra CPU µs per job (median, lower and upper quartile)."""
    job_ids = [f"job-{i}" for i in range(_N)]  # made up front: the worker has its ids already
    extra: dict[str, list[float]] = {mode: [] for mode in MODES[1:]}
    with tempfile.TemporaryFile("w") as out:
        for p in range(pairs):
            order = MODES if p % 2 else MODES[::-1]
            us = {mode: _block(mode, job_ids, out) for mode in order}
            for mode in extra:
                extra[mode].append(us[mode] - us["off"])
    result = {}
    for mode, diffs in extra.items():
        q1, q2, q3 = statistics.quantiles(diffs, n=4)
        result[mode] = (q2, q1, q3)
    return result


if __name__ == "__main__":
    for mode, (med, q1, q3) in main(int(sys.argv[1]) if len(sys.argv) > 1 else 40).items():
        print(f"{mode}: {med:.2f} µs CPU per job (quartiles {q1:.2f} … {q3:.2f})")
