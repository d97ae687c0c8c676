"""Topic admin, the producer library and CLI, on the real broker."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from producer import JobProducer, submit_file
from sluice.contract import decode_job
from sluice.errors import ContractError
from sluice.kafka import create_topics, ensure_topics
from sluice.settings import KafkaSettings, ProducerSettings
from sluice.topics import pipeline_specs
from tests.integration.conftest import Env, read_topic

pytestmark = pytest.mark.integration


def fresh_settings(bootstrap: str, **over: object) -> KafkaSettings:
    p = f"adm{uuid.uuid4().hex[:8]}"
    fields = {
        "bootstrap_servers": bootstrap,
        "jobs_topic": f"{p}-jobs",
        "results_topic": f"{p}-results",
        "dlq_topic": f"{p}-dlq",
        "high_topic": f"{p}-jobs.high",
    }
    return KafkaSettings.model_validate({**fields, **over})


def test_topics_are_created_once_and_rerunning_is_harmless(bootstrap: str) -> None:
    settings = fresh_settings(bootstrap, jobs_partitions=5)
    assert [r.status for r in create_topics(settings)] == ["created"] * 5
    assert [r.status for r in create_topics(settings)] == ["exists"] * 5
    jobs, high, results, _dlq, cancels = pipeline_specs(settings)
    assert jobs.partitions == 5 and high.partitions == 5
    assert results.config["cleanup.policy"] == "compact"
    assert cancels.name == f"{settings.jobs_topic}.cancel" and cancels.partitions == 1


def test_a_topic_with_another_configuration_is_reported(bootstrap: str) -> None:
    settings = fresh_settings(bootstrap, jobs_partitions=3)
    create_topics(settings)
    changed = settings.model_copy(update={"jobs_partitions": 4})
    reports = {r.name: r for r in create_topics(changed)}
    assert reports[settings.jobs_topic].status == "mismatch"
    assert "partitions=3 (wanted 4)" in reports[settings.jobs_topic].detail
    with pytest.raises(Exception, match="exists with partitions=3"):
        ensure_topics(changed)


def test_cli_topics_create_exit_code_reports_mismatch(bootstrap: str) -> None:
    settings = fresh_settings(bootstrap)
    env = settings.child_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "sluice.cli", "topics", "create", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)

    first, again, other = run(), run(), run("--partitions", "2")
    assert first.returncode == 0 and f"{settings.jobs_topic}: created" in first.stdout
    assert again.returncode == 0 and f"{settings.jobs_topic}: exists" in again.stdout
    assert other.returncode == 1 and "mismatch - partitions=12 (wanted 2)" in other.stdout


def test_submit_file_sends_good_lines_and_lists_bad_ones(env: Env, tmp_path: Path) -> None:
    lines = [
        orjson.dumps({"prompt": "first", "job_id": "f-1"}).decode(),
        "this is not json",
        orjson.dumps({"prompt": "x", "sampling": {"temperature": 7}}).decode(),
        "",
        orjson.dumps(
            {"messages": [{"role": "user", "content": "hi"}], "job_id": "f-2", "model": "other"}
        ).decode(),
        orjson.dumps({"prompt": "p", "v": 3}).decode(),
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with JobProducer(ProducerSettings(**env.settings.model_dump())) as producer:
        summary = submit_file(producer, path, default_model="tiny", progress=False)
    assert (summary.submitted, summary.acknowledged) == (2, 2)
    assert [(b.line, b.reason.split(":")[0]) for b in summary.bad_lines] == [
        (2, "not valid JSON"),
        (3, "invalid_field"),
        (6, "unsupported_schema_version"),
    ]
    assert "sampling.temperature" in summary.bad_lines[1].reason
    stored = {
        decode_job(v).job_id: decode_job(v) for _, v, _ in read_topic(env.bootstrap, env.settings.jobs_topic)
    }
    assert set(stored) == {"f-1", "f-2"}
    assert stored["f-1"].model == "tiny" and stored["f-2"].model == "other"
    keys_and_headers = read_topic(env.bootstrap, env.settings.jobs_topic)
    assert all(k == decode_job(v).job_id.encode() for k, v, _ in keys_and_headers)
    assert all(dict(h)["traceparent"].startswith(b"00-") for _, _, h in keys_and_headers)


def test_invalid_job_is_refused_at_submit_and_nothing_is_sent(env: Env) -> None:
    with (
        JobProducer(ProducerSettings(**env.settings.model_dump())) as producer,
        pytest.raises(ContractError, match=r"sampling\.top_p"),
    ):
        producer.submit({"model": "m", "prompt": "p", "sampling": {"top_p": 5}})
    assert read_topic(env.bootstrap, env.settings.jobs_topic, idle_s=1) == []


def test_cli_submit_prints_the_stored_position_or_a_precise_error(env: Env) -> None:
    base = [sys.executable, "-m", "sluice.cli", "submit", "--model", "tiny"]
    ok = subprocess.run(
        [*base, "--prompt", "hello", "--job-id", "cli-1", "--max-tokens", "3"],
        env=env.environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    out = orjson.loads(ok.stdout)
    assert out["job_id"] == "cli-1" and out["offset"] >= 0
    bad = subprocess.run(
        [*base, "--prompt", "hello", "--temperature", "9"],
        env=env.environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "sampling.temperature" in bad.stderr and "less than or equal to 2" in bad.stderr
