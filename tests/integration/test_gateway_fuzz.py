"""The gateway's served OpenAPI document, exercised by a property-based API tester (schemathesis):
whatever it sends to any route, with a valid key, the gateway never answers 5xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from gateway.openapi import document
from sluice.broker import free_port
from sluice.kafka import create_topics
from sluice.topics import pipeline_specs
from tests.integration.conftest import Env, Procs, api_key
from tests.integration.test_result_store import start_api


@pytest.fixture(scope="module")
def served(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One gateway (and a worker) for the module: its base URL and a key."""
    env = Env(bootstrap, f"z{uuid.uuid4().hex[:10]}", partitions=3)
    create_topics(env.settings, pipeline_specs(env.settings))
    procs = Procs(Path(tmp_path_factory.mktemp("fuzz")))
    port = free_port()
    # GET /v1/jobs/{id}?wait=W long-polls up to max_wait_s for a job that may never come: a drawn
    # wait of 45 s outlasted the client's 30 s (a CI run). Bounded to 2 s, a larger one is a 400.
    start_api(procs, env, port, procs.tmp / "g.db", SLUICE_API_MAX_WAIT_S="2")
    procs.start("worker", ["worker"], env.environ())
    yield f"http://127.0.0.1:{port}", api_key(env)
    procs.stop_all()


# The document the gateway serves (a test below checks that it does).
schema = schemathesis.openapi.from_dict(document())


def test_the_gateway_serves_its_openapi_document_to_anyone(served: tuple[str, str]) -> None:
    answer = httpx.get(f"{served[0]}/openapi.json")
    assert answer.status_code == 200 and answer.json() == document()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_gateway_fail(case: Case[Any], served: tuple[str, str]) -> None:
    base, key = served
    response = case.call(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    )
