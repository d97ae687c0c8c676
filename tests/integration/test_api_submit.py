"""POST /v1/jobs on the real broker: submit over HTTP, poll the result; every refusal names why."""

from __future__ import annotations

from pathlib import Path

from consumer.fake_engine import fake_completion
from sluice.broker import free_port
from sluice.contract import Job
from sluice.tracing import trace_id
from tests.integration.conftest import Env, Procs
from tests.integration.test_result_store import start_api

CALLER_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_job_posted_over_http_is_answered_and_polled(env: Env, procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    api = start_api(procs, env, port, tmp_path / "store.db")
    job = {"job_id": "http-1", "model": "tiny", "prompt": "posted over plain http", "metadata": {"k": 1}}

    posted = api.post("/v1/jobs", json=job, headers={"traceparent": CALLER_TRACE})
    assert posted.status_code == 202, posted.text
    body = posted.json()
    assert body["job_id"] == "http-1" and body["status"] == "queued" and body["offset"] >= 0
    assert posted.headers["Location"] == "/v1/jobs/http-1"
    assert trace_id(body["traceparent"]) == trace_id(CALLER_TRACE)
    # Read-your-writes: the replica that took the job knows it before any worker does.
    assert api.get("/v1/jobs/http-1").json()["status"] == "pending"

    procs.start("worker", ["worker"], env.environ())
    done = api.get(posted.headers["Location"], params={"wait": "60"}, timeout=70).json()
    expected = fake_completion(Job(**job))  # type: ignore[arg-type]
    assert done["status"] == "succeeded"
    assert done["result"]["output"] == expected.output and done["result"]["metadata"] == {"k": 1}

    # Without a job_id the API makes one, and its answer says which.
    fresh = api.post("/v1/jobs", json={"model": "tiny", "prompt": "no id given"}).json()
    got = api.get(f"/v1/jobs/{fresh['job_id']}", params={"wait": "60"}, timeout=70).json()
    assert got["status"] == "succeeded"


def test_refusals_name_the_problem(env: Env, procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    api = start_api(procs, env, port, tmp_path / "store.db")

    bad = api.post("/v1/jobs", json={"model": "tiny", "prompt": "x", "sampling": {"temperature": 9}})
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["code"] == "invalid_field"
    assert [p["field"] for p in error["problems"]] == ["sampling.temperature"]

    not_json = api.post("/v1/jobs", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    not_object = api.post("/v1/jobs", json=[1, 2])
    assert not_object.status_code == 400 and not_object.json()["error"]["code"] == "not_an_object"

    private = {"model": "tiny", "prompt": "x", "webhook_url": "http://10.20.30.40/hook"}
    refused = api.post("/v1/jobs", json=private)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "forbidden_webhook_url"

    huge = api.post("/v1/jobs", json={"model": "tiny", "prompt": "x" * 1_100_000})
    assert huge.status_code == 413


def test_above_the_lag_limit_the_api_answers_429_with_retry_after(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    api = start_api(procs, env, port, tmp_path / "s.db", SLUICE_MAX_LAG="3", SLUICE_LAG_CHECK_INTERVAL_S="0")
    codes = [api.post("/v1/jobs", json={"model": "tiny", "prompt": f"p{i}"}).status_code for i in range(4)]
    assert codes == [202, 202, 202, 202]  # no worker: the lag is now 4, above the limit of 3
    refused = api.post("/v1/jobs", json={"model": "tiny", "prompt": "one too many"})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    error = refused.json()["error"]
    assert error == {**error, "code": "backpressure", "type": "requests", "param": None, "lag": 4, "limit": 3}
