"""Why the sink is built on confluent-kafka: consume+decode throughput vs faust-streaming.

Both read the same topic (6 partitions, N Result records) and decode every record with
sluice.contract.decode_result; the clock starts at the first record each receives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import kafka, load, reader, topics
from sluice.contract import Result, decode_result, encode

_FAUST_APP = r"""
import os, sys, time
import faust
from sluice.contract import decode_result
N = int(sys.argv[1]); TOPIC = sys.argv[2]; BROKER = sys.argv[3]; OUT = sys.argv[4]
app = faust.App("bench-" + TOPIC, broker="kafka://" + BROKER, web_enabled=False, store="memory://")
topic = app.topic(TOPIC, value_type=bytes, value_serializer="raw")
state = {"n": 0, "t0": None}

@app.agent(topic)
async def consume(stream):
    async for value in stream:
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        decode_result(value)
        state["n"] += 1
        if state["n"] >= N:
            with open(OUT, "w") as fh:  # faust captures stdout into its log
                fh.write(str(N / (time.perf_counter() - state["t0"])))
            os._exit(0)

sys.argv = [sys.argv[0], "worker", "-l", "warn"]
app.main()
"""


def confluent_rate(bootstrap: str, topic: str, n: int) -> float:
    c = reader(bootstrap, topic)
    seen, t0 = 0, 0.0
    while seen < n:
        for msg in c.consume(500, 1.0):
            if msg.error():
                continue
            if seen == 0:
                t0 = time.perf_counter()
            decode_result(msg.value())
            seen += 1
    rate = n / (time.perf_counter() - t0)
    c.close()
    return rate


def faust_rate(bootstrap: str, topic: str, n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rate"
        python = os.environ.get("SLUICE_FAUST_PYTHON", sys.executable)
        cmd = [python, "-c", _FAUST_APP, str(n), topic, bootstrap, str(out)]
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=tmp, env=env)
        if not out.exists():
            raise RuntimeError(f"faust run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return float(out.read_text())


def main(n: int = 50_000) -> list[str]:
    with kafka() as bootstrap:
        s = topics(bootstrap, partitions=6)
        record = Result(
            job_id="x", status="succeeded", output="some output text " * 5, prompt_tokens=10, output_tokens=20
        )
        body = encode(record)
        load(bootstrap, s.results_topic, n, lambda i: (f"j{i}".encode(), body))
        ck = confluent_rate(bootstrap, s.results_topic, n)
        fa = faust_rate(bootstrap, s.results_topic, n)
    faust_python = os.environ.get("SLUICE_FAUST_PYTHON", sys.executable)
    ck_name, fa_name = (
        f"confluent-kafka {_version('confluent-kafka', sys.executable)}",
        f"faust-streaming {_version('faust-streaming', faust_python)}",
    )
    return [
        f"| {ck_name} consume + decode | {n:,} | **{ck:,.0f}** records/s |",
        f"| {fa_name} agent + decode | {n:,} | **{fa:,.0f}** records/s |",
        f"| ratio confluent-kafka / faust | | {ck / fa:.1f}x |",
    ]


def _version(dist: str, python: str) -> str:
    """The installed version of `dist` in `python`'s environment (faust has a venv of its own)."""
    code = f"from importlib.metadata import version; print(version({dist!r}))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":
    print("\n".join(main()))
