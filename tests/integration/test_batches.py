"""The Batches API through the official openai client, unchanged, against a gateway and workers on
the real broker: a batch runs to completed with real completion objects in its output file; an
invalid file fails with line errors; a batch cancelled or expired before its rows ran ends with
batch_cancelled / batch_expired lines; batches.list pages."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Literal

import openai
import orjson
from openai.types import Batch
from openai.types.chat import ChatCompletion

from consumer.fake_engine import FAIL_MARKER
from sluice.broker import free_port
from tests.integration.conftest import Env, Procs, api_key, wait_until
from tests.integration.test_result_store import start_api

CHAT: Literal["/v1/chat/completions"] = "/v1/chat/completions"


def row(custom_id: str, content: str, **body: object) -> dict[str, object]:
    message = [{"role": "user", "content": content}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": "tiny", "messages": message, **body},
    }


def jsonl(rows: list[dict[str, object]]) -> io.BytesIO:
    return io.BytesIO(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def until_ended(oai: openai.OpenAI, batch_id: str, timeout: float = 120) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = oai.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled") or time.monotonic() > deadline:
            return batch
        time.sleep(0.3)


def lines(oai: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [orjson.loads(x) for x in oai.files.content(file_id).read().splitlines()]


def gateway(env: Env, procs: Procs, tmp_path: Path) -> openai.OpenAI:
    key = api_key(env)
    port = free_port()
    start_api(procs, env, port, tmp_path / "g.db")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    procs.closers.append(client.close)
    return client


def test_a_batch_runs_to_completed_with_real_completions(env: Env, procs: Procs, tmp_path: Path) -> None:
    oai = gateway(env, procs, tmp_path)
    procs.start("worker", ["worker"], env.environ())
    rows = [row(f"r{i}", f"hello number {i}", max_tokens=3) for i in range(20)]
    rows.append(row("refused", f"x {FAIL_MARKER}"))  # the engine refuses it: an error line
    rows.append(row("odd", "y", n=2))  # a field Sluice does not support: an error line naming it
    upload = oai.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch")
    created = oai.batches.create(
        input_file_id=upload.id, endpoint=CHAT, completion_window="24h", metadata={"team": "etl"}
    )
    assert created.status == "validating" and created.metadata == {"team": "etl"}
    batch = until_ended(oai, created.id)
    assert batch.status == "completed", batch
    assert batch.request_counts is not None and batch.request_counts.model_dump() == {
        "total": 22,
        "completed": 20,
        "failed": 2,
    }
    assert batch.usage is not None and batch.usage.output_tokens > 0 and batch.model == "tiny"
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    out = lines(oai, batch.output_file_id)
    assert [o["custom_id"] for o in out] == [f"r{i}" for i in range(20)]  # input order
    for o in out:
        completion = ChatCompletion.model_validate(o["response"]["body"])
        assert completion.choices[0].message.content and completion.object == "chat.completion"
    errors = {e["custom_id"]: e["error"] for e in lines(oai, batch.error_file_id)}
    assert errors["refused"]["code"] == "permanent_error"
    assert errors["odd"]["code"] == "unsupported_field" and "body.n" in errors["odd"]["message"]
    assert oai.files.retrieve(str(batch.output_file_id)).purpose == "batch_output"


def test_an_invalid_file_fails_the_batch_with_line_errors(env: Env, procs: Procs, tmp_path: Path) -> None:
    oai = gateway(env, procs, tmp_path)
    good = row("a", "x")
    bad = jsonl([good, good, {**row("b", "y"), "url": "/v1/completions"}])
    bad.seek(0, io.SEEK_END)
    bad.write(b"not json\n")
    bad.seek(0)
    upload = oai.files.create(file=("bad.jsonl", bad), purpose="batch")
    batch = until_ended(
        oai, oai.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h").id
    )
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data is not None
    found = {(e.code, e.line) for e in batch.errors.data}
    assert {("duplicate_custom_id", 2), ("mismatched_url", 3), ("invalid_json_line", 4)} <= found
    assert batch.output_file_id is None and batch.failed_at


def test_cancelled_and_expired_batches_end_with_lines_for_what_never_ran(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    oai = gateway(env, procs, tmp_path)  # no worker: nothing runs
    upload = oai.files.create(
        file=("in.jsonl", jsonl([row(f"c{i}", "x") for i in range(3)])), purpose="batch"
    )
    doomed = oai.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h")
    assert oai.batches.cancel(doomed.id).status == "cancelling"
    cancelled = until_ended(oai, doomed.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at
    assert {e["error"]["code"] for e in lines(oai, cancelled.error_file_id)} == {"batch_cancelled"}

    short = oai.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="3s")  # type: ignore[arg-type]
    expired = until_ended(oai, short.id)
    assert expired.status == "expired" and expired.expired_at
    assert [e["custom_id"] for e in lines(oai, expired.error_file_id)] == ["c0", "c1", "c2"]

    listed = [b.id for b in oai.batches.list(limit=1)]  # one per page, every page
    assert listed == [short.id, doomed.id]


def test_a_gateway_killed_mid_batch_hands_it_over_and_each_row_is_answered_once(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    key = api_key(env)
    first, second = free_port(), free_port()
    start_api(procs, env, first, tmp_path / "a.db")
    start_api(procs, env, second, tmp_path / "b.db")  # two replicas from the start
    procs.start(
        "worker", ["worker"], env.environ(SLUICE_WORKER_FAKE_LATENCY_S="0.5", SLUICE_WORKER_MAX_IN_FLIGHT="4")
    )
    a = openai.OpenAI(base_url=f"http://127.0.0.1:{first}/v1", api_key=key, max_retries=0)
    b = openai.OpenAI(base_url=f"http://127.0.0.1:{second}/v1", api_key=key, max_retries=0)
    procs.closers += [a.close, b.close]
    rows = [row(f"k{i}", f"row {i}", max_tokens=2) for i in range(60)]
    upload = a.files.create(file=("in.jsonl", jsonl(rows)), purpose="batch")
    batches = [
        a.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h") for _ in range(4)
    ]

    def started(oai: openai.OpenAI) -> bool:
        try:
            return all(oai.batches.retrieve(x.id).status == "in_progress" for x in batches)
        except openai.NotFoundError:  # not yet on this replica: it follows the batches topic
            return False

    deadline = time.monotonic() + 60
    while not started(b) and time.monotonic() < deadline:
        time.sleep(0.2)
    procs.kill(procs.procs[0])  # the first replica, mid-run: the second takes its batches over
    for created in batches:
        done = until_ended(b, created.id, timeout=180)
        assert done.status == "completed" and done.request_counts is not None
        assert done.request_counts.completed == 60
        custom_ids = [line["custom_id"] for line in lines(b, done.output_file_id)]
        assert custom_ids == [f"k{i}" for i in range(60)]  # every row once, in input order


def test_the_batch_cli_submits_follows_and_downloads(env: Env, procs: Procs, tmp_path: Path) -> None:
    import subprocess
    import sys

    key = api_key(env)
    port = free_port()
    start_api(procs, env, port, tmp_path / "g.db")
    procs.start("worker", ["worker"], env.environ())
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(jsonl([row(f"q{i}", f"question {i}") for i in range(5)]).getvalue())
    cli_env = env.environ(SLUICE_API_URL=f"http://127.0.0.1:{port}", SLUICE_API_KEY=key)

    def sluice(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "sluice.cli", "batch", *args]
        return subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=180)

    submitted = sluice("submit", str(requests), "--wait")
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    assert batch_id.startswith("batch_") and "completed" in submitted.stderr
    out = tmp_path / "out.jsonl"
    assert sluice("download", batch_id, "--out", str(out)).returncode == 0
    answered = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [a["custom_id"] for a in answered] == [f"q{i}" for i in range(5)]
    assert (tmp_path / "out.errors.jsonl").read_bytes() == b""
    refused = sluice("status", "batch_nope")
    assert refused.returncode == 1 and "404 not_found" in refused.stderr


def test_a_batch_that_ends_is_announced_to_its_tenants_endpoint_as_openai_does(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    from openai.types.webhooks import BatchCompletedWebhookEvent

    from results_sink import decode_secret, start_receiver
    from tests.integration.conftest import SECRET

    receiver = start_receiver(decode_secret(SECRET))
    procs.closers.append(receiver.stop)
    events_only = [
        {
            "id": "acme-batches",
            "url": receiver.url,
            "tenants": ["acme"],
            "results": False,
            "events": ["batch.completed"],
        }
    ]
    sink_env = env.environ(SLUICE_SINK_SUBSCRIPTIONS=orjson.dumps(events_only).decode())
    procs.start("sink", ["sink"], sink_env)
    oai = gateway(env, procs, tmp_path)
    procs.start("worker", ["worker"], env.environ())
    upload = oai.files.create(file=("in.jsonl", jsonl([row("only", "hi")])), purpose="batch")
    batch = until_ended(
        oai, oai.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h").id
    )
    assert batch.status == "completed"

    def announced() -> bool:
        with receiver.lock:
            return bool(receiver.raw)

    wait_until(announced, 60, "the batch.completed event at the tenant's endpoint")
    ((headers, body),) = receiver.raw.values()  # the event only: this subscription takes no results
    verifier = openai.OpenAI(api_key="unused", webhook_secret=SECRET)
    event = verifier.webhooks.unwrap(body, headers)  # the openai client checks the signature itself
    assert isinstance(event, BatchCompletedWebhookEvent) and event.data.id == batch.id
    assert headers["webhook-id"] == event.id and event.created_at > 0
