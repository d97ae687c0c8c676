"""POST /v1/jobs and GET /v1/jobs/{id}: submit one job, read its result, as the caller's tenant.

POST /v1/jobs               the job as a JSON object (the contract's Job; `job_id` optional, and
                            the idempotency key; `tenant` is the key's); a `traceparent` header
                            continues the caller's trace. 202 {"job_id", "status": "queued",
                            "partition", "offset", "traceparent"} once Kafka has it, with
                            Location: /v1/jobs/{id}. 400 names every bad field ("problems") or a
                            forbidden webhook URL; 429 with Retry-After when the workers' lag is
                            above SLUICE_MAX_LAG or the tenant has max_in_flight jobs unanswered;
                            503 if Kafka did not take it (nothing was queued: send it again with
                            the same job_id).
GET /v1/jobs/{id}           200 {"job_id", "status": succeeded|failed|expired, "result": {...}}
                            200 {"job_id", "status": "pending"} while the job is queued/running
                            404 for an id never seen, or another tenant's
                            503 while the store is still catching up (a 404 could be wrong)
GET /v1/jobs/{id}?wait=30   holds the request until the result is stored (at most max_wait_s)
DELETE /v1/jobs/{id}        cancel: every worker is told; a queued job never starts, a running one
                            is aborted in its engine; either gets a `cancelled` Result. 202
                            {"job_id", "status": "cancelling"}; 409 once it has a result
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.auth import caller
from gateway.replies import error, json
from producer.client import JobProducer
from sluice.cancels import Cancellations
from sluice.errors import BackpressureError, ContractError, KafkaOperationError
from sluice.settings import ApiSettings
from sluice.store import ResultStore, StoreFollower
from sluice.urlpolicy import ForbiddenUrlError

__all__ = ["CANCELS", "FOLLOWER", "PRODUCER", "SETTINGS", "STORE", "cancel_job", "get_job", "post_job"]

STORE: web.AppKey[ResultStore] = web.AppKey("store", ResultStore)
FOLLOWER: web.AppKey[StoreFollower] = web.AppKey("follower", StoreFollower)
SETTINGS: web.AppKey[ApiSettings] = web.AppKey("settings", ApiSettings)
PRODUCER: web.AppKey[JobProducer] = web.AppKey("producer", JobProducer)
IN_FLIGHT: web.AppKey[dict[str, tuple[float, int]]] = web.AppKey("in_flight", dict)
CANCELS: web.AppKey[Cancellations] = web.AppKey("cancels", Cancellations)


def _in_flight(app: web.Application, tenant: str) -> int:
    """The tenant's unanswered jobs, counted at most once a second (a count over its jobs)."""
    cache = app[IN_FLIGHT]
    counted = cache.get(tenant)
    if counted is None or time.monotonic() - counted[0] >= 1.0:
        counted = cache[tenant] = (time.monotonic(), app[STORE].in_flight(tenant))
    return counted[1]


async def post_job(request: web.Request) -> web.Response:
    producer, store, key = request.app[PRODUCER], request.app[STORE], caller(request)
    try:
        spec = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return error(400, "invalid_json", f"the body is not JSON: {exc}")
    if isinstance(spec, dict) and spec.setdefault("tenant", key.tenant) != key.tenant:
        return error(400, "tenant_mismatch", f"this key submits for tenant {key.tenant!r}", param="tenant")
    if key.max_in_flight is not None and _in_flight(request.app, key.tenant) >= key.max_in_flight:
        message = f"tenant {key.tenant!r} has {key.max_in_flight} jobs unanswered, its limit; retry later"
        return error(429, "too_many_in_flight", message, headers={"Retry-After": "1"})
    try:
        # submit() may resolve the webhook host and read the workers' lag: off the event loop.
        queued = await asyncio.to_thread(
            producer.submit, spec, traceparent=request.headers.get("traceparent")
        )
        done = await asyncio.wrap_future(queued)
    except ContractError as exc:
        problems = [{"field": p.field, "reason": p.reason} for p in exc.problems]
        param = problems[0]["field"] if problems else None
        return error(400, exc.code, str(exc), param=param, problems=problems)
    except ForbiddenUrlError as exc:
        return error(400, exc.code, str(exc), param="webhook_url")
    except BackpressureError as exc:
        retry = str(max(1, math.ceil(producer.settings.lag_check_interval_s)))
        return error(429, exc.code, str(exc), headers={"Retry-After": retry}, lag=exc.lag, limit=exc.limit)
    except KafkaOperationError as exc:
        return error(503, exc.code, f"{exc}; nothing was queued, send it again with the same job_id")
    store.note_submitted(done.job_id, key.tenant)
    counted = request.app[IN_FLIGHT].get(key.tenant)
    if counted is not None:  # this one counts at once, not at the next recount
        request.app[IN_FLIGHT][key.tenant] = (counted[0], counted[1] + 1)
    answer = {
        "job_id": done.job_id,
        "status": "queued",
        "partition": done.partition,
        "offset": done.offset,
        "traceparent": done.traceparent,
    }
    return json(202, answer, headers={"Location": f"/v1/jobs/{done.job_id}", "traceparent": done.traceparent})


async def get_job(request: web.Request) -> web.Response:
    store, follower, settings = request.app[STORE], request.app[FOLLOWER], request.app[SETTINGS]
    tenant = caller(request).tenant
    job_id = request.match_info["job_id"]
    try:
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        return error(400, "invalid_wait", f"wait must be a number of seconds, got {request.query['wait']!r}")
    if not 0 <= wait <= settings.max_wait_s:
        return error(400, "invalid_wait", f"wait must be between 0 and {settings.max_wait_s:g} seconds")
    known = store.submitted(job_id, tenant)
    body = await store.wait_for(job_id, wait if (known or wait) else 0)
    if body is not None:
        result: dict[str, Any] = orjson.loads(body)
        if result.get("tenant") == tenant:
            return json(200, {"job_id": job_id, "status": result.get("status"), "result": result})
    elif known or store.submitted(job_id, tenant):
        return json(200, {"job_id": job_id, "status": "pending"})
    elif not follower.caught_up:
        return error(503, "catching_up", "the result store is still reading the results topic; retry shortly")
    return error(404, "not_found", f"no job {job_id!r} was submitted or answered for this tenant")


async def cancel_job(request: web.Request) -> web.Response:
    store, tenant = request.app[STORE], caller(request).tenant
    job_id = request.match_info["job_id"]
    body = store.result(job_id)
    if body is not None:
        result: dict[str, Any] = orjson.loads(body)
        if result.get("tenant") == tenant:
            message = f"job {job_id!r} already has a result ({result.get('status')})"
            return error(409, "job_answered", message, param="job_id")
    elif store.submitted(job_id, tenant):
        request.app[CANCELS].request([job_id])
        return json(202, {"job_id": job_id, "status": "cancelling"})
    return error(404, "not_found", f"no job {job_id!r} was submitted or answered for this tenant")
