"""The gateway's HTTP handlers on a real SQLite store and a fake Kafka producer (no broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.api import create_app
from producer.client import JobProducer
from sluice.settings import ApiSettings, ProducerSettings
from sluice.store import ResultStore, StoreFollower
from tests.unit.fakes import FakeProducer

Api = tuple[TestClient[web.Request, web.Application], ResultStore, FakeProducer, SimpleNamespace]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = ResultStore(tmp_path / "store.db")
    follower = SimpleNamespace(caught_up=True)
    kafka = FakeProducer()
    producer = JobProducer(ProducerSettings(), client=kafka)
    app = create_app(ApiSettings(max_wait_s=5), store, cast(StoreFollower, follower), producer)
    async with TestClient(TestServer(app)) as client:
        yield client, store, kafka, follower
    producer.close()
    store.close()


async def test_post_queues_the_job_and_answers_where_to_find_it(api: Api) -> None:
    client, _, kafka, _ = api
    response = await client.post("/v1/jobs", data=orjson.dumps({"job_id": "a", "model": "m", "prompt": "p"}))
    assert response.status == 202 and response.headers["Location"] == "/v1/jobs/a"
    body = await response.json()
    assert body["status"] == "queued" and body["job_id"] == "a"
    assert [r.key for r in kafka.acked] == [b"a"]
    pending = await client.get("/v1/jobs/a")
    assert (await pending.json())["status"] == "pending"  # read your writes: before the topic says so


async def test_a_bad_job_gets_400_naming_each_field(api: Api) -> None:
    client, _, kafka, _ = api
    bad = await client.post("/v1/jobs", data=orjson.dumps({"prompt": "p", "sampling": {"top_p": 7}}))
    body = await bad.json()
    assert bad.status == 400 and {p["field"] for p in body["error"]["problems"]} == {
        "model",
        "sampling.top_p",
    }
    not_json = await client.post("/v1/jobs", data=b"{")
    assert not_json.status == 400 and (await not_json.json())["error"]["code"] == "invalid_json"
    assert kafka.acked == []


async def test_results_unknown_ids_and_a_store_still_catching_up(api: Api) -> None:
    client, store, _, follower = api
    store.apply([("done", "succeeded", b'{"status": "succeeded", "output": "hi"}', None)], [], {("r", 0): 1})
    got = await (await client.get("/v1/jobs/done")).json()
    assert got == {"job_id": "done", "status": "succeeded", "result": {"status": "succeeded", "output": "hi"}}
    missing = await client.get("/v1/jobs/nope")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    follower.caught_up = False  # a 404 could be wrong while the store is still reading the topic
    assert (await client.get("/v1/jobs/nope")).status == 503
    assert (await client.get("/healthz")).status == 503
    bad_wait = await client.get("/v1/jobs/done", params={"wait": "99"})
    assert bad_wait.status == 400 and (await bad_wait.json())["error"]["code"] == "invalid_wait"
