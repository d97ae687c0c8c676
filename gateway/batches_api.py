"""The Batches API as the openai client calls it: create, retrieve, cancel, list; the output and
error files of a batch through the Files API (rendered from the results, never stored)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from gateway.auth import caller
from gateway.batches import BATCH_FILES, TERMINAL, Batch, Batches, new_batch_id, window_s
from gateway.driver import BatchDriver
from gateway.files_api import FILES
from gateway.pages import PageError, page
from gateway.replies import error, json
from gateway.rows import ENDPOINTS

__all__ = ["BATCHES", "BATCH_FILES", "DRIVER", "routes"]

BATCHES: web.AppKey[Batches] = web.AppKey("batches", Batches)
DRIVER: web.AppKey[BatchDriver] = web.AppKey("driver", BatchDriver)


def _missing(batch_id: str) -> web.Response:
    return error(404, "not_found", f"no batch {batch_id!r}", param="batch_id")


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
            for k, v in value.items()
        )
    ):
        raise ValueError("metadata: at most 16 string keys (64 chars) with string values (512 chars)")
    return value


async def create_batch(request: web.Request) -> web.Response:
    tenant = caller(request).tenant
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return error(400, "invalid_json", f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        return error(400, "invalid_request", "the body must be a JSON object")
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        return error(400, "invalid_endpoint", f"endpoint must be one of {list(ENDPOINTS)}", param="endpoint")
    window = window_s(str(body.get("completion_window")))
    if window is None:
        message = "completion_window must be '24h' (or a shorter '<n>s', '<n>m', '<n>h')"
        return error(400, "invalid_completion_window", message, param="completion_window")
    file_id = body.get("input_file_id")
    meta = request.app[FILES].get(str(file_id), tenant)
    if meta is None or meta.purpose != "batch":
        message = f"no file {file_id!r} with purpose 'batch'"
        return error(400, "invalid_input_file", message, param="input_file_id")
    try:
        metadata = _metadata(body.get("metadata"))
    except ValueError as exc:
        return error(400, "invalid_metadata", str(exc), param="metadata")
    created = time.time()
    now = int(created)
    batch = Batch(new_batch_id(), tenant, endpoint, meta.id, body["completion_window"], now, now + window)
    batch.metadata, batch.created = metadata, created
    request.app[BATCHES].save(batch)
    request.app[DRIVER].request(batch.id, "create")
    return json(200, batch.public())


async def get_batch(request: web.Request) -> web.Response:
    batch_id = request.match_info["batch_id"]
    batch = request.app[BATCHES].get(batch_id, caller(request).tenant)
    return json(200, batch.public()) if batch else _missing(batch_id)


async def cancel_batch(request: web.Request) -> web.Response:
    batch_id = request.match_info["batch_id"]
    batch = request.app[BATCHES].get(batch_id, caller(request).tenant)
    if batch is None:
        return _missing(batch_id)
    if batch.status in TERMINAL:
        return error(409, "batch_ended", f"batch {batch_id!r} is already {batch.status}", param="batch_id")
    request.app[DRIVER].request(batch.id, "cancel")
    answer = batch.public() | {"status": "cancelling", "cancelling_at": int(time.time())}
    return json(200, answer)


async def list_batches(request: web.Request) -> web.Response:
    mine = request.app[BATCHES].of(caller(request).tenant)
    mine.sort(key=lambda b: (b.created or b.created_at, b.id), reverse=True)
    query = {"limit": "20", **request.query}
    try:
        return json(200, page(mine, query, lambda b: b.id, Batch.public, max_limit=100))
    except PageError as exc:
        return error(400, f"invalid_{exc.param}", str(exc), param=exc.param)


def routes(app: web.Application) -> None:
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", get_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel_batch)
