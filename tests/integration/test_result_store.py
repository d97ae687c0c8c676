"""`sluice api` on the real broker: results, pending jobs, 404, long-poll, and a rebuild from the
topic after the store file is deleted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from confluent_kafka import Producer

from sluice.broker import free_port
from sluice.contract import Job, Result, encode
from tests.integration.conftest import TENANT, Env, Procs, api_key, wait_until


def produce(env: Env, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": env.bootstrap})
    for key, value in records:
        producer.produce(topic, value, key.encode())
    assert producer.flush(10) == 0


def result(job_id: str, output: str) -> bytes:
    return encode(Result(job_id=job_id, status="succeeded", model="m", output=output, tenant=TENANT))


def start_api(procs: Procs, env: Env, port: int, db: Path, **environ: str) -> httpx.Client:
    """Start `sluice api` (extra environment variables in `environ`), wait until it is ready, and
    return a client that calls it with a key of tenant TENANT (created first: it holds at once)."""
    headers = {"Authorization": f"Bearer {api_key(env)}"}
    procs.start(
        "api",
        ["api", "--host", "127.0.0.1", "--port", str(port), "--store-path", str(db)],
        env.environ(**environ),
    )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, "the api to catch up")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers)
    procs.closers.append(client.close)
    return client


def test_results_pending_unknown_long_poll_and_rebuild(env: Env, procs: Procs, tmp_path: Path) -> None:
    s = env.settings
    produce(env, s.results_topic, [(f"r-{i}", result(f"r-{i}", f"answer {i}")) for i in range(50)])
    produce(env, s.results_topic, [("r-7", result("r-7", "the newer answer"))])  # last one wins
    produce(env, s.jobs_topic, [("p-1", encode(Job(job_id="p-1", model="m", prompt="hi", tenant=TENANT)))])
    port, db = free_port(), tmp_path / "store.db"
    api = start_api(procs, env, port, db)

    got = api.get("/v1/jobs/r-3").json()
    assert (got["status"], got["result"]["output"]) == ("succeeded", "answer 3")
    assert api.get("/v1/jobs/r-7").json()["result"]["output"] == "the newer answer"
    wait_until(lambda: api.get("/v1/jobs/p-1").json().get("status") == "pending", 30, "p-1 pending")
    missing = api.get("/v1/jobs/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = api.get("/v1/jobs/p-1", params={"wait": "forever"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_wait"

    answers: list[tuple[float, dict[str, object]]] = []

    def long_poll() -> None:
        body = api.get("/v1/jobs/p-1?wait=30", timeout=40).json()
        answers.append((time.monotonic(), body))

    sent = time.monotonic()
    poll = threading.Thread(target=long_poll)
    poll.start()
    time.sleep(0.5)  # let the request reach the server and start waiting
    producing = time.monotonic()
    produce(env, s.results_topic, [("p-1", result("p-1", "late answer"))])
    poll.join(45)
    # One request, sent while the job was pending, answered only after its result was produced.
    ((answered, body),) = answers
    assert sent < producing < answered and body["status"] == "succeeded"

    # Killed, its file deleted: the restarted api rebuilds the same view from the topics.
    procs.kill(procs.procs[-1])
    for f in tmp_path.glob("store.db*"):
        f.unlink()
    api = start_api(procs, env, port, db)
    assert api.get("/v1/jobs/r-7").json()["result"]["output"] == "the newer answer"
    assert api.get("/v1/jobs/p-1").json()["result"]["output"] == "late answer"
    assert api.get("/v1/jobs/r-49").json()["status"] == "succeeded"
