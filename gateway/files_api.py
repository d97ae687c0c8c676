"""The Files API as the openai client calls it: upload (multipart `file` and `purpose`), retrieve,
content, delete, and list (after, limit, order, purpose), each file visible to its tenant only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.auth import caller
from gateway.batches import BATCH_FILES, Batch
from gateway.files import CHUNK_BYTES, FileMeta, Files, FileTooLarge
from gateway.jobs import SETTINGS
from gateway.pages import PageError, page
from gateway.replies import error, json

__all__ = ["FILES", "routes"]

FILES: web.AppKey[Files] = web.AppKey("files", Files)
PURPOSES = ("batch",)
MIN_EXPIRY_S, MAX_EXPIRY_S = 3600, 30 * 24 * 3600  # OpenAI's bounds on expires_after.seconds


def _missing(file_id: str) -> web.Response:
    return error(404, "not_found", f"no file {file_id!r}", param="file_id")


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    buffer = bytearray()
    while chunk := await part.read_chunk(CHUNK_BYTES):
        buffer += chunk
        if len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


async def create_file(request: web.Request) -> web.Response:
    files, tenant = request.app[FILES], caller(request).tenant
    if not request.content_type.startswith("multipart/"):
        return error(
            400, "invalid_request", "upload the file as multipart/form-data with `file` and `purpose`"
        )
    limit = request.app[SETTINGS].max_file_bytes
    expiry: dict[str, str] = {}
    try:
        purpose, meta = await _read_upload(request, files, tenant, limit, expiry)
    except FileTooLarge as exc:
        return error(413, "file_too_large", str(exc), param="file")
    except (ValueError, RuntimeError, HttpProcessingError) as exc:  # aiohttp's words for a malformed body
        return error(400, "invalid_multipart", f"the multipart body cannot be read: {exc}")
    if meta is None:
        return error(400, "missing_file", "the upload has no `file` part", param="file")
    if purpose not in PURPOSES:
        await files.delete(meta)
        return error(
            400,
            "invalid_purpose",
            f"purpose must be one of {list(PURPOSES)}, got {purpose!r}",
            param="purpose",
        )
    try:
        expires_at = _expires_at(expiry, meta.created)
    except ExpiryError as exc:
        await files.delete(meta)
        return error(400, "invalid_expires_after", str(exc), param=exc.param)
    if expires_at is not None:
        meta = replace(meta, expires_at=expires_at)
        await files.save(meta)
    return json(200, meta.public())


class ExpiryError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _expires_at(expiry: dict[str, str], created: float) -> int | None:
    """The expiry time asked for by `expires_after[anchor]` and `expires_after[seconds]` (the
    openai client's form fields), within OpenAI's bounds; None when not asked for."""
    if not expiry:
        return None
    anchor, seconds = expiry.get("anchor"), expiry.get("seconds")
    if anchor != "created_at":
        raise ExpiryError(
            f"expires_after.anchor must be 'created_at', got {anchor!r}", "expires_after.anchor"
        )
    if seconds is None or not seconds.strip().isdigit() or not MIN_EXPIRY_S <= int(seconds) <= MAX_EXPIRY_S:
        bounds = f"from {MIN_EXPIRY_S} to {MAX_EXPIRY_S}"
        message = f"expires_after.seconds must be a whole number {bounds}, got {seconds!r}"
        raise ExpiryError(message, "expires_after.seconds")
    return int(created) + int(seconds)


async def _read_upload(
    request: web.Request, files: Files, tenant: str, limit: int, expiry: dict[str, str]
) -> tuple[str | None, FileMeta | None]:
    """(purpose, the stored file) of a multipart upload, `expires_after[...]` fields into
    `expiry`; a file stored before a later part turns out malformed is deleted again."""
    purpose: str | None = None
    meta: FileMeta | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "purpose":
                purpose = (await part.text()).strip()
            elif part.name in ("expires_after[anchor]", "expires_after[seconds]"):
                expiry[part.name[len("expires_after[") : -1]] = (await part.text()).strip()
            elif part.name == "file" and meta is None:
                meta = await files.store(tenant, part.filename or "upload", "batch", _chunks(part), limit)
    except BaseException:
        if meta is not None:
            await files.delete(meta)
        raise
    return purpose, meta


async def list_files(request: web.Request) -> web.Response:
    tenant = caller(request).tenant
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        return error(400, "invalid_order", f"order must be 'asc' or 'desc', got {order!r}", param="order")
    mine = request.app[FILES].of(tenant)
    purpose = request.query.get("purpose")
    if purpose:
        mine = [m for m in mine if m.purpose == purpose]
    mine.sort(key=lambda m: (m.created, m.id), reverse=order == "desc")
    try:
        return json(200, page(mine, request.query, lambda m: m.id, FileMeta.public, max_limit=10_000))
    except PageError as exc:
        return error(400, f"invalid_{exc.param}", str(exc), param=exc.param)


def _batch_file(request: web.Request, file_id: str) -> tuple[Batch, str] | None:
    rendered = request.app.get(BATCH_FILES)
    return rendered.meta(file_id, caller(request).tenant) if rendered is not None else None


async def get_file(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    meta = request.app[FILES].get(file_id, caller(request).tenant)
    if meta is not None:
        return json(200, meta.public())
    found = _batch_file(request, file_id)
    return json(200, request.app[BATCH_FILES].public(*found)) if found else _missing(file_id)


async def file_content(request: web.Request) -> web.StreamResponse:
    file_id = request.match_info["file_id"]
    files = request.app[FILES]
    meta = files.get(file_id, caller(request).tenant)
    found = None if meta is not None else _batch_file(request, file_id)
    if meta is not None:
        chunks = files.content(meta)
    elif found is not None:
        chunks = request.app[BATCH_FILES].lines(*found)
    else:
        return _missing(file_id)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def delete_file(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    files = request.app[FILES]
    meta = files.get(file_id, caller(request).tenant)
    if meta is None:
        return _missing(file_id)
    await files.delete(meta)
    return json(200, {"id": file_id, "object": "file", "deleted": True})


def routes(app: web.Application) -> None:
    app.router.add_post("/v1/files", create_file)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{file_id}", get_file)
    app.router.add_get("/v1/files/{file_id}/content", file_content)
    app.router.add_delete("/v1/files/{file_id}", delete_file)
