"""The gateway's HTTP handlers on a real SQLite store, in-memory keys and a fake Kafka producer (no
broker): keys, tenants, limits, and the jobs routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.api import create_app
from gateway.keys import ApiKeys, new_key
from producer.client import JobProducer
from sluice.cancels import Cancellations
from sluice.settings import ApiSettings, ProducerSettings
from sluice.store import ResultStore, StoreFollower
from tests.unit.fakes import FakeProducer


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    store: ResultStore
    kafka: FakeProducer
    follower: SimpleNamespace
    keys: ApiKeys

    def auth(self, tenant: str = "acme", **limits: int) -> dict[str, str]:
        """A new key for `tenant`, as request headers."""
        token, key = new_key(tenant, **limits)
        self.keys.add(key)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = ResultStore(tmp_path / "store.db")
    follower = SimpleNamespace(caught_up=True)
    kafka = FakeProducer()
    keys = ApiKeys("keys", None, None)
    producer = JobProducer(ProducerSettings(), client=kafka)
    cancels = Cancellations("jobs.cancel", None, kafka)
    settings = ApiSettings(max_wait_s=5)
    app = create_app(settings, store, cast(StoreFollower, follower), producer, keys, cancels=cancels)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, store, kafka, follower, keys)
    producer.close()
    store.close()


JOB = orjson.dumps({"job_id": "a", "model": "m", "prompt": "p"})


async def test_post_queues_the_job_for_the_keys_tenant_and_answers_where_to_find_it(api: Api) -> None:
    acme = api.auth("acme")
    response = await api.client.post("/v1/jobs", data=JOB, headers=acme)
    assert response.status == 202 and response.headers["Location"] == "/v1/jobs/a"
    body = await response.json()
    assert body["status"] == "queued" and body["job_id"] == "a"
    assert [orjson.loads(r.value or b"")["tenant"] for r in api.kafka.acked] == ["acme"]
    pending = await api.client.get("/v1/jobs/a", headers=acme)
    assert (await pending.json())["status"] == "pending"  # read your writes: before the topic says so


async def test_without_a_valid_key_every_v1_route_answers_401_in_openais_shape(api: Api) -> None:
    none_yet = await api.client.get("/v1/jobs/a")
    assert none_yet.status == 401 and (await none_yet.json())["error"]["code"] == "no_api_keys"
    token, key = new_key("acme")
    api.keys.add(key)
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": f"Bearer {token}x"}):
        refused = await api.client.post("/v1/jobs", data=JOB, headers=headers)
        error = (await refused.json())["error"]
        assert refused.status == 401 and set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
    api.keys.revoke(key.id)
    revoked = await api.client.get("/v1/jobs/a", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status == 401
    assert (await api.client.get("/healthz")).status == 200  # health stays open
    assert api.kafka.acked == []


async def test_a_tenant_sees_only_its_own_jobs(api: Api) -> None:
    acme, globex = api.auth("acme"), api.auth("globex")
    assert (await api.client.post("/v1/jobs", data=JOB, headers=acme)).status == 202
    assert (await api.client.get("/v1/jobs/a", headers=globex)).status == 404
    result = {"job_id": "a", "status": "succeeded", "tenant": "acme", "output": "hi"}
    api.store.apply([("a", "succeeded", orjson.dumps(result), None)], [], {("r", 0): 1})
    assert (await (await api.client.get("/v1/jobs/a", headers=acme)).json())["result"]["output"] == "hi"
    assert (await api.client.get("/v1/jobs/a", headers=globex)).status == 404
    other = orjson.dumps({"model": "m", "prompt": "p", "tenant": "acme"})
    mismatch = await api.client.post("/v1/jobs", data=other, headers=globex)
    assert mismatch.status == 400 and (await mismatch.json())["error"]["param"] == "tenant"


async def test_per_key_limits_answer_429_with_retry_after(api: Api) -> None:
    limited = api.auth("acme", rpm=2)
    codes = [(await api.client.get("/v1/jobs/x", headers=limited)).status for _ in range(3)]
    assert codes == [404, 404, 429]
    refused = await api.client.get("/v1/jobs/x", headers=limited)
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["error"] == {
        "message": (await refused.json())["error"]["message"],
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    one_at_a_time = api.auth("globex", max_in_flight=1)
    first = await api.client.post("/v1/jobs", data=JOB, headers=one_at_a_time)
    second = await api.client.post(
        "/v1/jobs", data=orjson.dumps({"model": "m", "prompt": "q"}), headers=one_at_a_time
    )
    assert first.status == 202 and second.status == 429
    assert (await second.json())["error"]["code"] == "too_many_in_flight"


async def test_a_bad_job_gets_400_naming_each_field(api: Api) -> None:
    acme = api.auth()
    bad = await api.client.post(
        "/v1/jobs", data=orjson.dumps({"prompt": "p", "sampling": {"top_p": 7}}), headers=acme
    )
    body = await bad.json()
    assert bad.status == 400 and {p["field"] for p in body["error"]["problems"]} == {
        "model",
        "sampling.top_p",
    }
    not_json = await api.client.post("/v1/jobs", data=b"{", headers=acme)
    assert not_json.status == 400 and (await not_json.json())["error"]["code"] == "invalid_json"
    assert api.kafka.acked == []


async def test_results_unknown_ids_and_a_store_still_catching_up(api: Api) -> None:
    acme = api.auth()
    body = b'{"status": "succeeded", "output": "hi", "tenant": "acme"}'
    api.store.apply([("done", "succeeded", body, None)], [], {("r", 0): 1})
    got = await (await api.client.get("/v1/jobs/done", headers=acme)).json()
    assert got["status"] == "succeeded" and got["result"]["output"] == "hi"
    missing = await api.client.get("/v1/jobs/nope", headers=acme)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    api.follower.caught_up = False  # a 404 could be wrong while the store is still reading the topic
    assert (await api.client.get("/v1/jobs/nope", headers=acme)).status == 503
    assert (await api.client.get("/healthz")).status == 503
    bad_wait = await api.client.get("/v1/jobs/done", params={"wait": "99"}, headers=acme)
    assert bad_wait.status == 400 and (await bad_wait.json())["error"]["code"] == "invalid_wait"


async def test_delete_asks_every_worker_to_cancel_a_pending_job_of_the_tenant(api: Api) -> None:
    acme, globex = api.auth("acme"), api.auth("globex")
    assert (await api.client.post("/v1/jobs", data=JOB, headers=acme)).status == 202
    assert (await api.client.delete("/v1/jobs/a", headers=globex)).status == 404
    cancelling = await api.client.delete("/v1/jobs/a", headers=acme)
    assert cancelling.status == 202 and (await cancelling.json())["status"] == "cancelling"
    api.kafka.flush()
    assert [(r.topic, r.key) for r in api.kafka.acked if r.topic == "jobs.cancel"] == [("jobs.cancel", b"a")]
    answered = orjson.dumps({"job_id": "a", "status": "succeeded", "tenant": "acme"})
    api.store.apply([("a", "succeeded", answered, None)], [], {("r", 0): 1})
    too_late = await api.client.delete("/v1/jobs/a", headers=acme)
    assert too_late.status == 409 and (await too_late.json())["error"]["code"] == "job_answered"
