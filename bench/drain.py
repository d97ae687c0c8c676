"""Duplicates caused by a graceful drain (SIGTERM under load), and by a hard kill for contrast.

5,000 jobs wait on the topic; a worker (FakeEngine, 0.5 s per job, 200 in flight, the default
1 s commit interval) takes them and, 2.5 s after its first result, is stopped: SIGTERM with a
drain timeout that covers a job (10 s), SIGTERM with no drain time (0 s: in-flight jobs are
cancelled and left to the next owner), and SIGKILL. A second worker then finishes the topic.
Duplicates = result records - distinct job ids, counted from the results topic by a plain
consumer. A drain never publishes a job twice: jobs it cannot finish in time are cancelled
unanswered and run once by the next owner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

from bench.common import kafka, load, reader, topics
from sluice.contract import Job, SamplingParams, encode

CASES = {
    "SIGTERM, drain timeout 10 s (covers the in-flight jobs)": (signal.SIGTERM, "10"),
    "SIGTERM, drain timeout 0 s": (signal.SIGTERM, "0"),
    "SIGKILL": (signal.SIGKILL, "10"),
}


def _count(bootstrap: str, topic: str, n: int, timeout: float = 180) -> tuple[int, int]:
    """(records, distinct job ids) on the results topic once all n jobs have a result."""
    consumer = reader(bootstrap, topic)
    records, ids = 0, set()
    deadline = time.monotonic() + timeout
    try:
        quiet_since = None
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.5)
            for msg in batch:
                if msg.error() is None:
                    records += 1
                    ids.add(msg.key())
            if len(ids) >= n:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 3:  # late duplicates land within this
                    return records, len(ids)
    finally:
        consumer.close()
    raise TimeoutError(f"only {len(ids)} of {n} results")


def run_once(bootstrap: str, sig: signal.Signals, drain_s: str, n: int = 5000) -> tuple[int, int]:
    """(duplicates, results before the stop) for one case."""
    s = topics(bootstrap)
    sampling = SamplingParams(max_tokens=4)
    load(
        bootstrap,
        s.jobs_topic,
        n,
        lambda i: (
            f"d-{i}".encode(),
            encode(Job(job_id=f"d-{i}", model="fake", prompt="x", sampling=sampling)),
        ),
    )
    env = {
        **os.environ,
        **s.child_env(),
        "SLUICE_WORKER_GROUP_ID": f"{s.jobs_topic}-workers",
        "SLUICE_WORKER_ENGINE": "fake",
        "SLUICE_WORKER_FAKE_LATENCY_S": "0.5",
        "SLUICE_WORKER_MAX_IN_FLIGHT": "200",
        "SLUICE_WORKER_SESSION_TIMEOUT_MS": "6000",
        "SLUICE_WORKER_DRAIN_TIMEOUT_S": drain_s,
    }
    cmd = [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", "worker"]
    with tempfile.TemporaryFile() as log:
        first = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        results = reader(bootstrap, s.results_topic)
        before = 0
        while before == 0:
            before += sum(1 for m in results.consume(500, 0.5) if m.error() is None)
        time.sleep(2.5)
        first.send_signal(sig)
        first.wait(60)
        results.close()
        second = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        try:
            records, distinct = _count(bootstrap, s.results_topic, n)
        finally:
            second.terminate()
            second.wait(60)
    return records - distinct, distinct


def main() -> list[str]:
    rows = []
    with kafka() as bootstrap:
        for label, (sig, drain_s) in CASES.items():
            duplicates, distinct = run_once(bootstrap, sig, drain_s)
            rows.append(f"| {label} | {distinct:,} | **{duplicates}** |")
    return rows


if __name__ == "__main__":
    print("\n".join(main()))
