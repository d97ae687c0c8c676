"""Logging's throughput cost end to end, logging switched on and off inside one running worker.

Separate runs per setting cannot resolve a cost of 2 % here: a 2-core shared machine drifts by
±15 % between runs. So one worker (real Kafka, the plumbing benchmark's settings, instant
FakeEngine) runs through a preloaded backlog while a thread switches its logging between off
(WARNING) and on (INFO: the "jobs done" access log, written by the writer thread to a file) in
short alternating blocks, A B B A. Adjacent blocks share the machine's phase, so the ratio of
each pair cancels drift. Per block: jobs published per second, and the process's CPU time per
job (every thread: the loop, librdkafka's, the log writer). Each block starts with a settling
time in which nothing is counted, so lines gathered in an "on" block and written after the
switch are not charged to the "off" block that follows it.
Reported: the median over pairs of the on/off ratio, with a 95 % bootstrap interval.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time

from bench.common import kafka, load, topics
from bench.plumbing import bench_job, worker_env
from consumer.fake_engine import FakeEngine
from consumer.worker import Worker, create_worker
from sluice.logs import configure_logging
from sluice.loop import run as run_loop
from sluice.settings import WorkerSettings

_SETTLE_S = 0.3
_BLOCK_S = 0.8


def _published(worker: Worker) -> int:
    return sum(worker.stats.values())


def _set_logging(worker: Worker, on: bool) -> None:
    logging.getLogger().setLevel(logging.INFO if on else logging.WARNING)
    worker.job_log.enabled = on


def _blocks(
    worker: Worker,
    loop: asyncio.AbstractEventLoop,
    pairs: int,
    out: dict[bool, list[tuple[float, float]]],
) -> None:
    """Alternate the logging setting; per block (jobs/s, CPU µs per job) into out[on]."""
    try:
        while _published(worker) == 0:  # group join, first fetch
            time.sleep(0.1)
        time.sleep(2)  # warm-up
        for p in range(pairs):
            for on in (False, True) if p % 2 == 0 else (True, False):
                _set_logging(worker, on)
                time.sleep(_SETTLE_S)
                jobs0, cpu0, t0 = _published(worker), time.process_time(), time.perf_counter()
                time.sleep(_BLOCK_S)
                jobs1, cpu1, t1 = _published(worker), time.process_time(), time.perf_counter()
                if jobs1 == jobs0:
                    raise RuntimeError("the worker ran out of jobs: load more")
                out[on].append(((jobs1 - jobs0) / (t1 - t0), 1e6 * (cpu1 - cpu0) / (jobs1 - jobs0)))
    finally:
        loop.call_soon_threadsafe(worker.stop)


def _interval(ratios: list[float], rounds: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the median."""
    rng = random.Random(1)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(rounds))
    return meds[int(0.025 * rounds)], meds[int(0.975 * rounds)]


Summary = tuple[float, float, float, float, float, float, float]


def measure(pairs: int = 120, rate: float = 30_000) -> dict[str, Summary]:
    """{"jobs/s" | "cpu/job": (median off, median on, median of on/off - 1, its 95 % interval,
    its quartiles)}, all ratios minus 1."""
    n = int(rate * (4 + 2 * pairs * (_SETTLE_S + _BLOCK_S)))
    with kafka() as bootstrap, tempfile.TemporaryFile("w") as log_file:
        s = topics(bootstrap)
        load(bootstrap, s.jobs_topic, n, bench_job)
        env = worker_env(s, f"{s.jobs_topic}-workers")
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            settings = WorkerSettings()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        writer = configure_logging("worker", "INFO", log_file)
        worker = create_worker(settings, FakeEngine())
        out: dict[bool, list[tuple[float, float]]] = {False: [], True: []}

        async def run() -> None:
            args = (worker, asyncio.get_running_loop(), pairs, out)
            thread = threading.Thread(target=_blocks, args=args, daemon=True)
            thread.start()
            await worker.run()
            thread.join()

        run_loop(run())
        writer.stop()
        logging.getLogger().handlers.clear()
    result = {}
    for i, name in enumerate(("jobs/s", "cpu/job")):
        off = [b[i] for b in out[False]]
        on = [b[i] for b in out[True]]
        ratios = [a / b for a, b in zip(on, off, strict=True)]
        low, high = _interval(ratios)
        q1, q2, q3 = statistics.quantiles(ratios, n=4)
        result[name] = (
            statistics.median(off),
            statistics.median(on),
            q2 - 1,
            low - 1,
            high - 1,
            q1 - 1,
            q3 - 1,
        )
    return result


def main(pairs: int = 120) -> list[str]:
    """Table rows: the cost as a fall in jobs/s and a rise in CPU per job."""
    r = measure(pairs)
    rows = []
    for name, label, sign in (("jobs/s", "jobs/s", -1), ("cpu/job", "CPU µs per job", 1)):
        off, on, mid, low, high, q1, q3 = r[name]
        lo, hi = sorted((sign * low, sign * high))
        q_lo, q_hi = sorted((sign * q1, sign * q3))
        fmt = ",.0f" if name == "jobs/s" else ".1f"
        rows.append(
            f"| {label} | {pairs} | {off:{fmt}} | {on:{fmt}} | **{100 * sign * mid:+.1f} %** "
            f"| {100 * lo:+.1f} … {100 * hi:+.1f} % | {100 * q_lo:+.1f} … {100 * q_hi:+.1f} % |"
        )
    return rows


if __name__ == "__main__":
    print("\n".join(main(int(sys.argv[1]) if len(sys.argv) > 1 else 120)))
