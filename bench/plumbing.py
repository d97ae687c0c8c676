"""Plumbing headroom: jobs/s one worker process carries with an instant fake engine.

Loads N jobs, starts one `sluice worker` process (FakeEngine with zero latency), and samples the
group's committed offsets: rate = jobs committed between the first progress sample and the last /
elapsed. Committed means: result acknowledged by Kafka (acks=all) and offset committed.
Also the worker process's CPU time per job over the same window (/proc; all its threads, so the
log writer thread counts): steadier than jobs/s on a shared 2-core machine.
Run with logging off (WARNING), at the default INFO (the "jobs done" access log: columnar lines
of up to 50 jobs) and at DEBUG (plus a LogRecord line per admitted job), all with the idempotency
cache on (the default), and once more with logging and the cache off, and once in exactly-once
mode; interleaved.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

from bench import logcost
from bench.common import kafka, load, topics, wait_committed
from sluice.contract import Job, SamplingParams, encode
from sluice.settings import KafkaSettings

_SAMPLING = SamplingParams(max_tokens=16)


def bench_job(i: int) -> tuple[bytes, bytes]:
    """The i-th benchmark job as (key, value)."""
    jid = f"b-{i}"
    job = Job(job_id=jid, model="fake", prompt=f"benchmark prompt {i} with a few words", sampling=_SAMPLING)
    return jid.encode(), encode(job)


def worker_env(
    s: KafkaSettings, group: str, idempotency: bool = True, exactly_once: bool = False
) -> dict[str, str]:
    """The environment of a benchmark worker: instant FakeEngine, large batches."""
    return {
        **os.environ,
        **s.child_env(),
        "SLUICE_WORKER_GROUP_ID": group,
        "SLUICE_WORKER_ENGINE": "fake",
        "SLUICE_WORKER_MAX_IN_FLIGHT": "4096",
        "SLUICE_WORKER_BATCH_SIZE": "1024",
        "SLUICE_WORKER_COMMIT_INTERVAL_S": "0.2",
        "SLUICE_WORKER_IDEMPOTENCY": "true" if idempotency else "false",
        "SLUICE_WORKER_EXACTLY_ONCE": "true" if exactly_once else "false",
    }


def run_once(
    bootstrap: str, n: int, log_level: str, idempotency: bool = True, exactly_once: bool = False
) -> tuple[float, float]:
    """(jobs/s, worker CPU µs per job) of one run."""
    s = topics(bootstrap)
    load(bootstrap, s.jobs_topic, n, bench_job)
    group = f"{s.jobs_topic}-workers"
    env = worker_env(s, group, idempotency, exactly_once)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--log-level", log_level, "worker"],
            env=env,
            stdout=log,
            stderr=log,
        )
        cpu: list[float] = []
        try:
            t0, t1, done0 = wait_committed(bootstrap, group, s.jobs_topic, 12, n, cpu=cpu, pid=proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    return (n - done0) / (t1 - t0), 1e6 * (cpu[1] - cpu[0]) / (n - done0)


LEVELS = {
    "NOIDEM": "logging off, idempotency cache off",
    "WARNING": "logging off (WARNING)",
    "INFO": 'logging on at the default INFO (the columnar "jobs done" access log)',
    "DEBUG": "logging on at DEBUG (plus one LogRecord line per job)",
    "EOS": "exactly-once mode (transactions every 0.2 s), logging off",
}


def main(n: int = 100_000, rounds: int = 3) -> list[str]:
    rates: dict[str, list[float]] = {level: [] for level in LEVELS}
    cpus: dict[str, list[float]] = {level: [] for level in LEVELS}
    with kafka() as bootstrap:
        for _ in range(rounds):  # interleaved so drift hits every level alike
            for level in LEVELS:
                if level == "NOIDEM":
                    rate, cpu = run_once(bootstrap, n, "WARNING", idempotency=False)
                elif level == "EOS":
                    rate, cpu = run_once(bootstrap, n, "WARNING", exactly_once=True)
                else:
                    rate, cpu = run_once(bootstrap, n, level)
                rates[level].append(rate)
                cpus[level].append(cpu)
    best = {level: max(r) for level, r in rates.items()}
    med = {level: statistics.median(c) for level, c in cpus.items()}
    med_cpu_off = med["WARNING"]
    rows = []
    for level, label in LEVELS.items():
        runs = " / ".join(f"{x:,.0f}" for x in rates[level])
        cpu_runs = " / ".join(f"{x:.1f}" for x in cpus[level])
        if level == "NOIDEM":
            cost = (
                f"the cache costs {100 * (1 - best['WARNING'] / best['NOIDEM']):.1f} % jobs/s, "
                f"{100 * (med['WARNING'] / med['NOIDEM'] - 1):.1f} % CPU"
            )
        elif level == "WARNING":
            cost = ""
        elif level == "EOS":
            cost = (
                f"exactly-once costs {100 * (1 - best[level] / best['WARNING']):.1f} % jobs/s, "
                f"{100 * (med[level] / med['WARNING'] - 1):.1f} % CPU per job vs at-least-once"
            )
        else:
            cost = (
                f"logging costs {100 * (1 - best[level] / best['WARNING']):.1f} % jobs/s, "
                f"{100 * (med[level] / med['WARNING'] - 1):.1f} % CPU per job"
            )
        rows.append(
            f"| one worker, instant FakeEngine, {label} | {n:,} | {runs} | **{best[level]:,.0f}** "
            f"| {cpu_runs} | **{med[level]:.1f}** | {cost} |"
        )
    extra = logcost.main()
    for mode, what in (
        ("columnar", 'the "jobs done" access log'),
        ("record", "for comparison, an ordinary `logging` call (a LogRecord) per job"),
    ):
        median, q1, q3 = extra[mode]
        rows.append(
            f"| {what} alone, in one process without Kafka (bench/logcost.py, 40 interleaved block pairs) "
            f"| 800,000 | | | | {median:.2f} extra (quartiles {q1:.2f} … {q3:.2f}) "
            f"| {100 * median / med_cpu_off:.1f} % of the median CPU per job with logging off above |"
        )
    return rows


if __name__ == "__main__":
    print("\n".join(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)))
