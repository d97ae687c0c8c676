"""Expiring uploaded files (OpenAI's `expires_after`) on in-memory tables and a fake producer: what
a sweep deletes, what it keeps, and the batch files that go with their input."""

from __future__ import annotations

from typing import cast

from gateway.batches import Batch, Batches, BatchFiles
from gateway.expiry import sweep
from gateway.files import FileMeta, Files
from sluice.clients import ReaderLike
from sluice.settings import KafkaSettings
from sluice.store import ResultStore
from sluice.table import Table
from tests.unit.fakes import FakeProducer

NOW = 1_800_000_000.0


def _no_reader() -> ReaderLike:
    raise AssertionError("a sweep reads no file")


def _files(kafka: FakeProducer) -> Files:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    table: Table[FileMeta] = Table(settings.files_topic, FileMeta.decode, None, kafka)
    return Files(settings, table, kafka, _no_reader)


def _put(files: Files, file_id: str, expires_at: int | None) -> FileMeta:
    meta = FileMeta(file_id, "acme", f"{file_id}.jsonl", "batch", 10, NOW - 7200, [3, 4], expires_at)
    files.table.put(file_id, meta, meta.encode())
    return meta


def _batch(batches: Batches, input_file_id: str, status: str) -> Batch:
    batch = Batch("batch_00ff", "acme", "/v1/chat/completions", input_file_id, "24h", 0, 0, status)
    batch.total = batch.completed = 1
    batches.save(batch)
    return batch


async def test_a_sweep_deletes_expired_files_and_their_chunks_and_keeps_the_rest() -> None:
    kafka = FakeProducer()
    files = _files(kafka)
    batches = Batches(Table("batches", Batch.decode, None, None))
    _put(files, "file-old", int(NOW) - 1)
    _put(files, "file-due", int(NOW))
    _put(files, "file-later", int(NOW) + 1)
    _put(files, "file-forever", None)
    kafka.acked.clear()

    assert sorted(await sweep(files, batches, NOW)) == ["file-due", "file-old"]

    assert sorted(key for key, _ in files.table.items()) == ["file-forever", "file-later"]
    tombstones = {(r.topic, (r.key or b"").decode()) for r in kafka.acked if r.value is None}
    chunks = files.settings.file_chunks_topic
    assert tombstones == {
        (files.settings.files_topic, "file-old"),
        (files.settings.files_topic, "file-due"),
        *((chunks, f"{f}/{i}") for f in ("file-old", "file-due") for i in (0, 1)),
    }
    assert await sweep(files, batches, NOW) == []


async def test_a_file_an_unfinished_batch_reads_is_kept_until_the_batch_ends() -> None:
    files = _files(FakeProducer())
    batches = Batches(Table("batches", Batch.decode, None, None))
    _put(files, "file-input", int(NOW) - 1)
    batch = _batch(batches, "file-input", "in_progress")

    assert await sweep(files, batches, NOW) == []

    batch.status = "completed"
    batches.save(batch)
    rendered = BatchFiles(files, cast(ResultStore, None), batches)
    output = f"file-{batch.id}-output"
    assert rendered.meta(output, "acme") == (batch, "output")
    assert rendered.public(batch, "output")["expires_at"] == int(NOW) - 1  # it goes with its input
    assert await sweep(files, batches, NOW) == ["file-input"]
    assert rendered.meta(output, "acme") is None  # rendered from the input: gone with it
