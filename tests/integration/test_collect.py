"""Batch files end to end: submit a file with a manifest, collect its results into JSONL files."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from consumer.fake_engine import FAIL_MARKER, fake_completion
from producer import JobProducer, Manifest, submit_file
from sluice.contract import Job
from sluice.settings import ProducerSettings
from tests.integration.conftest import Env, Procs, read_topic, wait_until

pytestmark = pytest.mark.integration

N = 300


def write_file(path: Path) -> dict[int, dict[str, object]]:
    """N good lines (every 50th fails in the engine, every 75th is past its deadline) and four bad."""
    lines: dict[int, dict[str, object] | str] = {}
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for i in range(N):
        spec: dict[str, object] = {"job_id": f"row-{i}", "prompt": f"batch row {i} of the file"}
        if i % 50 == 7:
            spec["prompt"] = f"row {i} {FAIL_MARKER}"
        if i % 75 == 11:
            spec["deadline"] = past
        lines[len(lines) + 1] = spec
    lines[len(lines) + 1] = "not json"
    lines[len(lines) + 1] = {"prompt": "x", "sampling": {"temperature": 9}}
    lines[len(lines) + 1] = {"job_id": "row-3", "prompt": "the id of line 4 again"}
    lines[len(lines) + 1] = {"prompt": "fine", "v": 99}
    path.write_text(
        "\n".join(v if isinstance(v, str) else orjson.dumps(v).decode() for v in lines.values()) + "\n"
    )
    return {n: v for n, v in lines.items() if isinstance(v, dict)}


def run_cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING", *args],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_files_results_are_collected_once_each_with_their_line_numbers(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    source = tmp_path / "jobs.jsonl"
    specs = write_file(source)
    manifest = tmp_path / "jobs.manifest.json"
    settings = ProducerSettings(**env.settings.model_dump())
    with JobProducer(settings) as producer:
        summary = submit_file(producer, source, default_model="tiny", progress=False, manifest=manifest)
    assert summary.acknowledged == N
    reasons = {b.line: b.reason for b in summary.bad_lines}
    assert sorted(reasons) == [N + 1, N + 2, N + 3, N + 4]
    assert reasons[N + 3] == "job_id 'row-3' repeats line 4"

    procs.start("worker", ["worker"], env.environ())
    topic = env.settings.results_topic
    wait_until(lambda: len(read_topic(env.bootstrap, topic)) >= N, 120, "all results")
    # At-least-once delivery can repeat a result: publish a copy of one, as a redelivery would.
    key, value, _ = next(r for r in read_topic(env.bootstrap, topic) if r[0] == b"row-5")
    copier = Producer({"bootstrap.servers": env.bootstrap})
    copier.produce(topic, value, key)
    assert copier.flush(30) == 0

    out = tmp_path / "results.jsonl"
    done = run_cli(env, "collect", str(manifest), "--out", str(out), "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert "1 repeated results skipped" in done.stdout

    good, rest = read_jsonl(out), read_jsonl(tmp_path / "results.errors.jsonl")
    failed = {i for i in range(N) if i % 50 == 7}
    expired = {i for i in range(N) if i % 75 == 11} - failed
    assert sorted(str(e["job_id"]) for e in good) == sorted(
        f"row-{i}" for i in range(N) if i not in failed | expired
    )
    for entry in good:
        line = int(entry["line"])  # type: ignore[call-overload]
        job = Job(model="tiny", **specs[line])  # type: ignore[arg-type]
        assert entry["job_id"] == job.job_id and entry["status"] == "succeeded"
        assert entry["output"] == fake_completion(job).output
    by_status: dict[str, set[object]] = {}
    for entry in rest:
        by_status.setdefault(str(entry["status"]), set()).add(entry.get("job_id", entry["line"]))
    assert by_status == {
        "failed": {f"row-{i}" for i in failed},
        "expired": {f"row-{i}" for i in expired},
        "rejected": {N + 1, N + 2, N + 3, N + 4},
    }
    rejected = {e["line"]: e["error"] for e in rest if e["status"] == "rejected"}
    assert "repeats line 4" in rejected[N + 3]["message"]  # type: ignore[index]


def test_collect_reports_what_it_is_still_waiting_for(env: Env, tmp_path: Path) -> None:
    # No worker runs: nothing is answered, and collect says which lines it gave up on.
    manifest = tmp_path / "m.json"
    topic = env.settings.results_topic
    Manifest("f.jsonl", topic, dict.fromkeys(range(env.partitions), 0), jobs=[(1, "a"), (2, "b")]).save(
        manifest
    )
    done = run_cli(env, "collect", str(manifest), "--out", str(tmp_path / "o.jsonl"), "--timeout", "2")
    assert done.returncode == 3, done.stderr
    assert "still waiting for 2 results:\n  line 1: a\n  line 2: b" in done.stdout


def test_a_file_that_is_not_a_manifest_is_refused_by_name(env: Env, tmp_path: Path) -> None:
    bogus = tmp_path / "jobs.jsonl"
    bogus.write_text('{"prompt": "this is a jobs file"}\n')
    done = run_cli(env, "collect", str(bogus), "--out", str(tmp_path / "o.jsonl"))
    assert done.returncode == 2
    assert f"error (invalid_manifest): {bogus}: manifest version None, expected 1" in done.stderr
