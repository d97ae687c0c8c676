"""Plumbing headroom: jobs/s one worker process carries with an instant fake engine.

Loads N jobs, starts one `sluice worker` process (FakeEngine with zero latency), and samples the
group's committed offsets: rate = jobs committed between the first progress sample and the last /
elapsed. Committed means: result acknowledged by Kafka (acks=all) and offset committed.
Run with logging off (WARNING), at the default INFO (no per-job line) and at DEBUG (two JSON lines
per job), all with the idempotency cache on (the default), and once more with logging and the cache
off; interleaved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from bench.common import kafka, load, topics, wait_committed
from sluice.contract import Job, SamplingParams, encode


def run_once(bootstrap: str, n: int, log_level: str, idempotency: bool = True) -> float:
    s = topics(bootstrap)
    sampling = SamplingParams(max_tokens=16)

    def make(i: int) -> tuple[bytes, bytes]:
        jid = f"b-{i}"
        job = Job(
            job_id=jid, model="fake", prompt=f"benchmark prompt {i} with a few words", sampling=sampling
        )
        return jid.encode(), encode(job)

    load(bootstrap, s.jobs_topic, n, make)
    group = f"{s.jobs_topic}-workers"
    env = {
        **os.environ,
        **s.child_env(),
        "SLUICE_WORKER_GROUP_ID": group,
        "SLUICE_WORKER_MAX_IN_FLIGHT": "4096",
        "SLUICE_WORKER_BATCH_SIZE": "1024",
        "SLUICE_WORKER_COMMIT_INTERVAL_S": "0.2",
        "SLUICE_WORKER_IDEMPOTENCY": "true" if idempotency else "false",
    }
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "--log-level", log_level, "worker"],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            t0, t1, done0 = wait_committed(bootstrap, group, s.jobs_topic, 12, n)
        finally:
            proc.terminate()
            proc.wait(60)
    return (n - done0) / (t1 - t0)


LEVELS = {
    "NOIDEM": "logging off, idempotency cache off",
    "WARNING": "logging off (WARNING)",
    "INFO": "logging on at the default INFO (lifecycle lines; none per job)",
    "DEBUG": "logging on at DEBUG (2 JSON lines per job)",
}


def main(n: int = 100_000, rounds: int = 3) -> list[str]:
    rates: dict[str, list[float]] = {level: [] for level in LEVELS}
    with kafka() as bootstrap:
        for _ in range(rounds):  # interleaved so drift hits every level alike
            for level in LEVELS:
                if level == "NOIDEM":
                    rates[level].append(run_once(bootstrap, n, "WARNING", idempotency=False))
                else:
                    rates[level].append(run_once(bootstrap, n, level))
    best = {level: max(r) for level, r in rates.items()}
    rows = []
    for level, label in LEVELS.items():
        runs = " / ".join(f"{x:,.0f}" for x in rates[level])
        cost_pct = 100 * (1 - best[level] / best["WARNING"])
        if level == "NOIDEM":
            cost = f" (the cache costs {100 * (1 - best['WARNING'] / best['NOIDEM']):.1f} %)"
        else:
            cost = "" if level == "WARNING" else f" (throughput cost vs off: {cost_pct:.1f} %)"
        rows.append(
            f"| one worker, instant FakeEngine, {label} | {n:,} | {runs} "
            f"| **{best[level]:,.0f}** jobs/s{cost} |"
        )
    return rows


if __name__ == "__main__":
    print("\n".join(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)))
