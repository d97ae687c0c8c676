"""Batches: the record of each batch (OpenAI's Batch object plus what Sluice needs), kept in a
compacted topic that every gateway replica mirrors (sluice.table), and what a batch's files hold.

A batch's rows are ordinary jobs (job id from the batch id and the row's custom_id, both in the
job's metadata), so workers, priority, idempotency and exactly-once need no special case; a row
that cannot be a job gets a failed Result of its own on the results topic. Progress, the output
file and the error file are all read from the results topic through the gateway's result store:
nothing is stored twice.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from aiohttp import web

from gateway.files import FileMeta, Files
from gateway.rows import error_line, job_id_for, output_line
from sluice.store import ResultStore
from sluice.table import Table

__all__ = ["TERMINAL", "Batch", "BatchFiles", "Batches", "window_s"]

TERMINAL = ("completed", "failed", "expired", "cancelled")
_WINDOW = re.compile(r"^(\d+)([smh])$")


def window_s(completion_window: str) -> int | None:
    """Seconds of a completion window: OpenAI's "24h", or any "<n>s|m|h" up to 24 h; None if bad."""
    match = _WINDOW.match(completion_window)
    if match is None:
        return None
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
    return seconds if 0 < seconds <= 24 * 3600 else None


@dataclass
class Batch:
    """One batch: the Batch object's fields, its tenant and the sizes of its rendered files."""

    id: str
    tenant: str
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    status: str = "validating"
    metadata: dict[str, str] | None = None
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    output_bytes: int = 0
    error_bytes: int = 0
    times: dict[str, int] = field(default_factory=dict)  # in_progress_at, finalizing_at, ...
    # time.time() at creation: lists are ordered by it (created_at is whole seconds, and two
    # batches created in one second must still list newest first, the same on every page).
    created: float = 0.0

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, value: bytes) -> Batch:
        return cls(**orjson.loads(value))

    def move(self, status: str) -> None:
        self.status = status
        self.times[f"{status}_at"] = int(time.time())

    @property
    def output_file_id(self) -> str | None:
        return f"file-{self.id}-output" if self.status in TERMINAL and self.completed else None

    @property
    def error_file_id(self) -> str | None:
        return f"file-{self.id}-errors" if self.status in TERMINAL and self.failed else None

    def public(self) -> dict[str, Any]:
        """The Batch object the openai client reads: every field it declares."""
        t = self.times
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": t.get("in_progress_at"),
            "expires_at": self.expires_at,
            "finalizing_at": t.get("finalizing_at"),
            "completed_at": t.get("completed_at"),
            "failed_at": t.get("failed_at"),
            "expired_at": t.get("expired_at"),
            "cancelling_at": t.get("cancelling_at"),
            "cancelled_at": t.get("cancelled_at"),
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
            "metadata": self.metadata,
        }


def new_batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


class Batches:
    """The batch records as the topic says."""

    def __init__(self, table: Table[Batch]) -> None:
        self.table = table

    def get(self, batch_id: str, tenant: str | None = None) -> Batch | None:
        batch = self.table.get(batch_id)
        return batch if batch is not None and (tenant is None or batch.tenant == tenant) else None

    def of(self, tenant: str) -> list[Batch]:
        return [b for _, b in self.table.items() if b.tenant == tenant]

    def save(self, batch: Batch) -> None:
        self.table.put(batch.id, batch, batch.encode())


class BatchFiles:
    """A batch's output and error files, rendered from the result store in input order."""

    def __init__(self, files: Files, store: ResultStore, batches: Batches) -> None:
        self.files, self.store, self.batches = files, store, batches

    def meta(self, file_id: str, tenant: str) -> tuple[Batch, str] | None:
        """(batch, "output" | "errors") of a batch file id, if the tenant's batch has that file."""
        match = re.match(r"^file-(batch_[0-9a-f]+)-(output|errors)$", file_id)
        batch = self.batches.get(match.group(1), tenant) if match else None
        if batch is None or match is None:
            return None
        kind = match.group(2)
        wanted = batch.output_file_id if kind == "output" else batch.error_file_id
        if wanted != file_id or self.files.table.get(batch.input_file_id) is None:
            return None  # rendered from the input file: deleted or expired with it
        return batch, kind

    def public(self, batch: Batch, kind: str) -> dict[str, Any]:
        source = self.files.table.get(batch.input_file_id)  # the file expires with its source
        return {
            "id": f"file-{batch.id}-{kind}",
            "object": "file",
            "bytes": batch.output_bytes if kind == "output" else batch.error_bytes,
            "created_at": batch.times.get(f"{batch.status}_at", batch.created_at),
            "filename": f"{batch.id}_{kind}.jsonl",
            "purpose": "batch_output",
            "status": "processed",
            "status_details": None,
            "expires_at": source.expires_at if source else None,
        }

    async def lines(self, batch: Batch, kind: str) -> AsyncIterator[bytes]:
        """The file's lines: for each input row, in order, its output or error line; yielded in
        blocks of about 64 KiB, the results read 500 rows to a query."""
        block = bytearray()
        chunk: list[str] = []
        async for custom_id in self.custom_ids(batch):
            chunk.append(custom_id)
            if len(chunk) == 500:
                block += await self._render(batch, kind, chunk)
                chunk = []
                if len(block) >= 65536:
                    yield bytes(block)
                    block.clear()
        block += await self._render(batch, kind, chunk)
        if block:
            yield bytes(block)

    async def _render(self, batch: Batch, kind: str, custom_ids: list[str]) -> bytes:
        unanswered = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(batch.status)
        job_ids = [job_id_for(batch.id, c) for c in custom_ids]
        found = self.store.results(job_ids)
        out = bytearray()
        for job_id, custom_id in zip(job_ids, custom_ids, strict=True):
            body = found.get(job_id)
            if body is None and unanswered is None:
                body = await self.store.wait_for(job_id, 10)  # this replica's store may lag a little
            if body is None:
                if kind == "errors" and unanswered is not None:
                    why = f"the batch was {batch.status} before this request was answered"
                    out += orjson.dumps(error_line(job_id, custom_id, unanswered, why, None)) + b"\n"
                continue
            result = orjson.loads(body)
            status = result.get("status")
            if status == "succeeded":
                if kind == "output":
                    out += orjson.dumps(output_line(result, custom_id, batch.endpoint)) + b"\n"
            elif kind == "errors":
                out += orjson.dumps(_error_of(result, job_id, custom_id)) + b"\n"
        return bytes(out)

    async def custom_ids(self, batch: Batch) -> AsyncIterator[str]:
        """The custom_id of every valid-JSON line of the input file, in order."""
        meta = self.files.table.get(batch.input_file_id)
        if meta is None:
            return
        async for line in lines_of(self.files, meta):
            try:
                custom_id = orjson.loads(line).get("custom_id")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(custom_id, str) and custom_id:
                yield custom_id


def _error_of(result: dict[str, Any], job_id: str, custom_id: str) -> dict[str, Any]:
    """The error line of a result that did not succeed."""
    error = result.get("error") or {}
    code, message = str(error.get("code") or "failed"), str(error.get("message") or result.get("status"))
    if result.get("status") in ("expired", "cancelled"):
        code = f"batch_{result['status']}"
        return error_line(job_id, custom_id, code, message, None)
    return error_line(job_id, custom_id, code, message, 500 if code.startswith("engine") else 400)


async def lines_of(files: Files, meta: FileMeta) -> AsyncIterator[bytes]:
    """The non-blank lines of a stored file, streamed."""
    rest = b""
    async for chunk in files.content(meta):
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for part in parts:
            if part.strip():
                yield part
    if rest.strip():
        yield rest


BATCH_FILES: web.AppKey[BatchFiles] = web.AppKey("batch_files", BatchFiles)
