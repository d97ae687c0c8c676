"""The README's downstream examples run against the real broker and print every result."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from sluice.contract import Result, encode
from tests.conftest import ROOT
from tests.integration.conftest import Env


def produce_results(env: Env, n: int) -> set[str]:
    producer = Producer({"bootstrap.servers": env.bootstrap, "compression.type": "lz4"})
    ids = {f"sub-{i}" for i in range(n)}
    for job_id in ids:
        value = encode(Result(job_id=job_id, status="succeeded", model="m", output="o", output_tokens=1))
        producer.produce(env.settings.results_topic, value, job_id.encode())
    assert producer.flush(10) == 0
    return ids


def printed_ids(text: str) -> set[str]:
    # faust may route print() through its log (a "[WARNING]" prefix): find the ids anywhere.
    return set(re.findall(r"\b(sub-\d+) succeeded 1 tokens", text))


def test_confluent_kafka_example(env: Env) -> None:
    ids = produce_results(env, 20)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/subscribe_confluent.py"),
            "--group",
            f"{env.prefix}-ex",
            "--max",
            "20",
        ],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert printed_ids(out.stdout + out.stderr) == ids


def test_faust_example(env: Env, tmp_path: Path) -> None:
    python = os.environ.get("SLUICE_FAUST_PYTHON")
    if not python:
        if os.environ.get("SLUICE_REQUIRE_FAUST") == "1":
            pytest.fail("SLUICE_FAUST_PYTHON is not set (make test builds the faust venv)")
        pytest.skip("faust-streaming lives in its own venv: run through make test")
    ids = produce_results(env, 20)
    environ = env.environ(EXAMPLE_MAX_RESULTS="20", EXAMPLE_GROUP=f"{env.prefix}-faust")
    out = subprocess.run(
        [os.path.abspath(python), str(ROOT / "examples/subscribe_faust.py"), "worker", "-l", "warn"],
        env=environ,
        cwd=tmp_path,  # faust keeps a data directory in the working directory
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert printed_ids(out.stdout + out.stderr) == ids
