"""`sluice api`: GET /v1/jobs/{id} from the result store, with optional long-poll.

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
import signal
from typing import Any

import orjson
from aiohttp import web

from sluice.loop import run as run_loop
from sluice.settings import ApiSettings
from sluice.store import ResultStore, StoreFollower

__all__ = ["create_app", "run_api"]

log = logging.getLogger("sluice.api")

STORE: web.AppKey[ResultStore] = web.AppKey("store", ResultStore)
FOLLOWER: web.AppKey[StoreFollower] = web.AppKey("follower", StoreFollower)
SETTINGS: web.AppKey[ApiSettings] = web.AppKey("settings", ApiSettings)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"error": {"code": code, "message": message}})


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


def create_app(settings: ApiSettings, store: ResultStore, follower: StoreFollower) -> web.Application:
    app = web.Application()
    app[STORE], app[FOLLOWER], app[SETTINGS] = store, follower, settings
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
        runner = web.AppRunner(create_app(settings, store, follower), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("api listening", extra={"host": settings.host, "port": settings.port})
        following = asyncio.create_task(follower.run(stop))
        await stop.wait()
        await runner.cleanup()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        follower.close()
        store.close()
        return 0

    return run_loop(main())
