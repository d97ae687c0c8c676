"""Cancelling reaches every worker: DELETE /v1/jobs/{id} and a batch cancel, on the real broker."""

from __future__ import annotations

import time
from pathlib import Path

import openai
from confluent_kafka import Producer
from openai.types import Batch

from gateway.rows import job_id_for
from sluice.broker import free_port
from sluice.contract import encode_result
from tests.integration.conftest import Env, Procs, api_key, wait_until
from tests.integration.test_batches import CHAT, jsonl, lines, row, until_ended
from tests.integration.test_result_store import start_api


def test_delete_aborts_a_running_job_and_keeps_a_queued_one_from_starting(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    api = start_api(procs, env, free_port(), tmp_path / "s.db")
    # One job at a time, each taking a minute: the first runs, the second waits its turn.
    procs.start(
        "worker", ["worker"], env.environ(SLUICE_WORKER_FAKE_LATENCY_S="60", SLUICE_WORKER_MAX_IN_FLIGHT="1")
    )
    for job_id in ("running", "queued"):
        assert api.post("/v1/jobs", json={"job_id": job_id, "model": "m", "prompt": "p"}).status_code == 202
    time.sleep(2)  # let the worker start the first
    for job_id in ("running", "queued"):
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 202
    for job_id in ("running", "queued"):
        got = api.get(f"/v1/jobs/{job_id}", params={"wait": "50"}, timeout=60).json()
        assert got["status"] == "cancelled" and got["result"]["error"]["code"] == "cancelled", got
    assert api.delete("/v1/jobs/running").status_code == 409


def test_a_batch_cancelled_mid_run_stops_its_rows_on_the_workers(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    key = api_key(env)
    port = free_port()
    start_api(procs, env, port, tmp_path / "g.db")
    procs.start(
        "worker", ["worker"], env.environ(SLUICE_WORKER_FAKE_LATENCY_S="0.5", SLUICE_WORKER_MAX_IN_FLIGHT="2")
    )
    oai = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    procs.closers.append(oai.close)
    upload = oai.files.create(
        file=("in.jsonl", jsonl([row(f"r{i}", "x") for i in range(40)])), purpose="batch"
    )
    batch = oai.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h")

    def some_done() -> bool:
        counts = oai.batches.retrieve(batch.id).request_counts
        return counts is not None and counts.completed >= 2

    wait_until(some_done, 60, "a few rows answered")
    oai.batches.cancel(batch.id)
    ended = until_ended(oai, batch.id)
    assert ended.status == "cancelled" and ended.request_counts is not None
    done = ended.request_counts.completed
    assert 2 <= done < 40 and ended.request_counts.failed == 40 - done
    # The workers were told: rows not answered before the cancel get `cancelled` results, so the
    # files say the same whenever they are downloaded.
    wait_until(lambda: len(lines(oai, ended.error_file_id)) == 40 - done, 30, "the rows' cancelled lines")
    codes = {line["error"]["code"] for line in lines(oai, ended.error_file_id)}
    assert codes == {"batch_cancelled"} and len(lines(oai, ended.output_file_id)) == done


def _cancelled_with_no_worker(
    env: Env, procs: Procs, tmp_path: Path, rows: int, **environ: str
) -> tuple[openai.OpenAI, Batch]:
    """A gateway (no worker), a batch of `rows` rows published, then cancelled."""
    port = free_port()
    key = api_key(env)
    start_api(procs, env, port, tmp_path / "g.db", **environ)
    oai = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    procs.closers.append(oai.close)
    content = jsonl([row(f"r{i}", "x") for i in range(rows)])
    upload = oai.files.create(file=("in.jsonl", content), purpose="batch")
    batch = oai.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h")
    wait_until(lambda: oai.batches.retrieve(batch.id).status == "in_progress", 60, "the rows published")
    oai.batches.cancel(batch.id)
    return oai, batch


def test_a_cancelled_batch_waits_for_its_rows_answers_and_counts_one_that_finished_first(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    # No worker yet: the rows wait in the jobs topic.
    oai, batch = _cancelled_with_no_worker(env, procs, tmp_path, 10)
    # No row has its answer yet: the batch stays "cancelling", as OpenAI's do while requests finish.
    time.sleep(3)
    assert oai.batches.retrieve(batch.id).status == "cancelling"
    # A row a worker finished just before the cancel reached it: its result lands after the cancel.
    early = job_id_for(batch.id, "r0")
    producer = Producer({"bootstrap.servers": env.bootstrap})
    value = encode_result(early, "succeeded", model="m", output="early", output_tokens=1)
    producer.produce(env.settings.results_topic, value, early.encode())
    assert producer.flush(30) == 0
    procs.start("worker", ["worker"], env.environ())  # the other nine are cancelled, never started
    ended = until_ended(oai, batch.id)
    assert ended.status == "cancelled" and ended.request_counts is not None
    assert (ended.request_counts.completed, ended.request_counts.failed) == (1, 9)
    # The counts and the files agree, whenever the files are read.
    assert [line["custom_id"] for line in lines(oai, ended.output_file_id)] == ["r0"]
    errors = lines(oai, ended.error_file_id)
    assert len(errors) == 9 and {line["error"]["code"] for line in errors} == {"batch_cancelled"}


def test_a_cancelled_batch_with_no_worker_to_answer_ends_after_the_grace(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    oai, batch = _cancelled_with_no_worker(env, procs, tmp_path, 5, SLUICE_API_BATCH_CANCEL_GRACE_S="2")
    ended = until_ended(oai, batch.id)
    assert ended.status == "cancelled" and ended.request_counts is not None
    assert (ended.request_counts.completed, ended.request_counts.failed) == (0, 5)
    assert ended.output_file_id is None and len(lines(oai, ended.error_file_id)) == 5
