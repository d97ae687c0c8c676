"""Uploaded files that asked to expire (OpenAI's `expires_after`) are deleted once their time has
passed. Every replica sweeps: deleting a file twice writes the same tombstones. A file that an
unfinished batch reads is kept until the batch ends; a batch's output and error files are rendered
from its input file, so they go with it."""

from __future__ import annotations

import logging

from gateway.batches import TERMINAL, Batches
from gateway.files import Files

__all__ = ["sweep"]

log = logging.getLogger("sluice.gateway.files")


async def sweep(files: Files, batches: Batches, now: float) -> list[str]:
    """Delete the files whose expiry is at or before `now`; returns their ids."""
    in_use = {b.input_file_id for _, b in batches.table.items() if b.status not in TERMINAL}
    gone = []
    for file_id, meta in files.table.items():
        if meta.expires_at is not None and meta.expires_at <= now and file_id not in in_use:
            await files.delete(meta)
            gone.append(file_id)
    if gone:
        log.info("expired files deleted", extra={"files": len(gone)})
    return gone
