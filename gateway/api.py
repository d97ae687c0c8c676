"""`sluice api`: submit jobs over HTTP and read their results from the result store.

POST /v1/jobs               the job as a JSON object (the contract's Job; `job_id` optional, and
                            the idempotency key); a `traceparent` header continues the caller's
                            trace. 202 {"job_id", "status": "queued", "partition", "offset",
                            "traceparent"} once Kafka has it, with Location: /v1/jobs/{id}.
                            400 {"error": {"code", "message", "problems": [{field, reason}]}}
                            for a bad job or a forbidden webhook URL; 429 with Retry-After when
                            the workers' lag is above SLUICE_MAX_LAG; 503 if Kafka did not take it
                            (nothing was queued: send it again with the same job_id).
GET /v1/jobs/{id}           200 {"job_id", "status": succeeded|failed|expired, "result": {...}}
                            200 {"job_id", "status": "pending"} while the job is queued/running
                            404 {"error": {"code": "not_found", ...}} for an id never seen
                            503 while the store is still catching up (a 404 could be wrong)
GET /v1/jobs/{id}?wait=30   holds the request until the result is stored (at most max_wait_s)
GET /healthz                {"caught_up": bool, "results": n}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from typing import Any

import orjson
from aiohttp import web

from producer.client import JobProducer
from sluice.errors import BackpressureError, ContractError, KafkaOperationError
from sluice.loop import run as run_loop
from sluice.settings import ApiSettings, KafkaSettings, ProducerSettings
from sluice.store import ResultStore, StoreFollower
from sluice.urlpolicy import ForbiddenUrlError

__all__ = ["create_app", "run_api"]

log = logging.getLogger("sluice.gateway")

STORE: web.AppKey[ResultStore] = web.AppKey("store", ResultStore)
FOLLOWER: web.AppKey[StoreFollower] = web.AppKey("follower", StoreFollower)
SETTINGS: web.AppKey[ApiSettings] = web.AppKey("settings", ApiSettings)
PRODUCER: web.AppKey[JobProducer] = web.AppKey("producer", JobProducer)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"error": {"code": code, "message": message}})


async def post_job(request: web.Request) -> web.Response:
    producer, store = request.app[PRODUCER], request.app[STORE]
    try:
        spec = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _error(400, "invalid_json", f"the body is not JSON: {exc}")
    try:
        # submit() may resolve the webhook host and read the workers' lag: off the event loop.
        queued = await asyncio.to_thread(
            producer.submit, spec, traceparent=request.headers.get("traceparent")
        )
        done = await asyncio.wrap_future(queued)
    except ContractError as exc:
        problems = [{"field": p.field, "reason": p.reason} for p in exc.problems]
        return _json(400, {"error": {"code": exc.code, "message": str(exc), "problems": problems}})
    except ForbiddenUrlError as exc:
        return _error(400, exc.code, str(exc))
    except BackpressureError as exc:
        retry = max(1, math.ceil(producer.settings.lag_check_interval_s))
        body = {"error": {"code": exc.code, "message": str(exc), "lag": exc.lag, "limit": exc.limit}}
        return web.Response(
            status=429,
            body=orjson.dumps(body),
            content_type="application/json",
            headers={"Retry-After": str(retry)},
        )
    except KafkaOperationError as exc:
        return _error(503, exc.code, f"{exc}; nothing was queued, send it again with the same job_id")
    store.note_submitted(done.job_id)
    location = f"/v1/jobs/{done.job_id}"
    answer = {
        "job_id": done.job_id,
        "status": "queued",
        "partition": done.partition,
        "offset": done.offset,
        "traceparent": done.traceparent,
    }
    return web.Response(
        status=202,
        body=orjson.dumps(answer),
        content_type="application/json",
        headers={"Location": location, "traceparent": done.traceparent},
    )


async def get_job(request: web.Request) -> web.Response:
    store, follower, settings = request.app[STORE], request.app[FOLLOWER], request.app[SETTINGS]
    job_id = request.match_info["job_id"]
    try:
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        return _error(400, "invalid_wait", f"wait must be a number of seconds, got {request.query['wait']!r}")
    if not 0 <= wait <= settings.max_wait_s:
        return _error(400, "invalid_wait", f"wait must be between 0 and {settings.max_wait_s:g} seconds")
    known = store.submitted(job_id)
    body = await store.wait_for(job_id, wait if (known or wait) else 0)
    if body is not None:
        result = orjson.loads(body)
        return _json(200, {"job_id": job_id, "status": result.get("status"), "result": result})
    if known or store.submitted(job_id):
        return _json(200, {"job_id": job_id, "status": "pending"})
    if not follower.caught_up:
        return _error(
            503, "catching_up", "the result store is still reading the results topic; retry shortly"
        )
    return _error(404, "not_found", f"no job {job_id!r} was submitted or answered")


async def healthz(request: web.Request) -> web.Response:
    follower = request.app[FOLLOWER]
    return _json(
        200 if follower.caught_up else 503,
        {"caught_up": follower.caught_up, "results": request.app[STORE].count()},
    )


def create_app(
    settings: ApiSettings, store: ResultStore, follower: StoreFollower, producer: JobProducer
) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[STORE], app[FOLLOWER], app[SETTINGS], app[PRODUCER] = store, follower, settings, producer
    app.router.add_post("/v1/jobs", post_job)
    app.router.add_get("/v1/jobs/{job_id}", get_job)
    app.router.add_get("/healthz", healthz)
    return app


def run_api(settings: ApiSettings) -> int:
    """Serve until SIGTERM/SIGINT."""

    async def main() -> int:
        store = ResultStore(settings.store_path)
        follower = StoreFollower(settings, store)
        follower.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # The producer's own settings (max_lag, compression, ...) come from the environment, like
        # `sluice submit`'s; the cluster and topics are the API's.
        shared = {name: getattr(settings, name) for name in KafkaSettings.model_fields}
        producer = JobProducer(ProducerSettings(**shared))
        runner = web.AppRunner(create_app(settings, store, follower, producer), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("api listening", extra={"host": settings.host, "port": settings.port})
        following = asyncio.create_task(follower.run(stop))
        await stop.wait()
        await runner.cleanup()
        await asyncio.to_thread(producer.close)
        with contextlib.suppress(asyncio.CancelledError):
            await following
        follower.close()
        store.close()
        return 0

    return run_loop(main())
