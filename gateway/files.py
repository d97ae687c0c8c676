"""Uploaded files, kept in Kafka so that every gateway replica can serve every file.

Chosen: two compacted one-partition topics. `files_topic` holds one small record per file (what
it is, whose, and the offsets of its chunks), mirrored in memory by every replica (sluice.table).
`file_chunks_topic` holds the bytes in chunks of at most 512 KiB (under the broker's default
record size limit), read on demand from the offsets the file's record lists: compaction never moves
a record, so an offset stays valid while its chunk lives. A deleted file is a tombstone for its
record and for each chunk. Uploads and downloads stream chunk by chunk: memory stays flat in the
file size. Kafka is already the one stateful dependency Sluice has; an object store would add a
second, and local disks would tie a file to one replica.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from sluice.clients import ProducerLike, ReaderLike
from sluice.errors import KafkaOperationError
from sluice.kafka import produce, producer_config, reader_config
from sluice.settings import KafkaSettings
from sluice.table import Table

__all__ = ["CHUNK_BYTES", "FileMeta", "Files", "open_files"]

CHUNK_BYTES = 512 * 1024
_IN_FLIGHT_CHUNKS = 8  # produced and not yet acknowledged, per upload: bounds an upload's memory


@dataclass(frozen=True)
class FileMeta:
    """A file: the fields of OpenAI's FileObject, its tenant, and where its bytes are."""

    id: str
    tenant: str
    filename: str
    purpose: str
    size: int
    created: float  # time.time() when stored: lists are ordered by it
    chunks: list[int] = field(default_factory=list)  # offsets in the chunks topic, in order
    expires_at: int | None = None  # OpenAI's `expires_after`: deleted once this has passed

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, value: bytes) -> FileMeta:
        return cls(**orjson.loads(value))

    def public(self) -> dict[str, Any]:
        """The FileObject the openai client reads."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.size,
            "created_at": int(self.created),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": self.expires_at,
        }


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


class FileTooLarge(ValueError):
    """The upload went past the size limit; nothing of it is kept."""


class Files:
    """Store and read files (see the module docstring)."""

    def __init__(
        self,
        settings: KafkaSettings,
        table: Table[FileMeta],
        producer: ProducerLike,
        reader: Callable[[], ReaderLike],
    ) -> None:
        self.settings = settings
        self.table = table
        self._producer = producer
        self._reader = reader

    def get(self, file_id: str, tenant: str) -> FileMeta | None:
        meta = self.table.get(file_id)
        return meta if meta is not None and meta.tenant == tenant else None

    def of(self, tenant: str) -> list[FileMeta]:
        return [meta for _, meta in self.table.items() if meta.tenant == tenant]

    async def store(
        self, tenant: str, filename: str, purpose: str, chunks: AsyncIterator[bytes], limit: int
    ) -> FileMeta:
        """Write the file chunk by chunk, then its record; returns the record once Kafka has both."""
        file_id = new_file_id()
        offsets: dict[int, int] = {}
        failures: list[str] = []
        size = 0

        def stored(index: int) -> Callable[[KafkaError | None, Any], None]:
            def done(err: KafkaError | None, msg: Any) -> None:
                if err is not None:
                    failures.append(str(err))
                else:
                    offsets[index] = msg.offset()

            return done

        index = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(f"the file is larger than {limit} bytes")
                key = f"{file_id}/{index}".encode()
                produce(
                    self._producer, self.settings.file_chunks_topic, chunk, key, on_delivery=stored(index)
                )
                index += 1
                while len(self._producer) > _IN_FLIGHT_CHUNKS:
                    await asyncio.to_thread(self._producer.poll, 0.05)
            await self._acknowledged(failures)
        except BaseException:
            for i in range(index):  # nothing of a failed upload stays
                produce(self._producer, self.settings.file_chunks_topic, None, f"{file_id}/{i}".encode())
            self._producer.poll(0)
            raise
        meta = FileMeta(
            file_id, tenant, filename, purpose, size, time.time(), [offsets[i] for i in range(index)]
        )
        self.table.put(file_id, meta, meta.encode())
        await self._acknowledged(failures)
        return meta

    async def save(self, meta: FileMeta) -> None:
        """Write a changed record of a stored file; returns once Kafka has it."""
        self.table.put(meta.id, meta, meta.encode())
        await self._acknowledged([])

    async def _acknowledged(self, failures: list[str]) -> None:
        left = await asyncio.to_thread(self._producer.flush, 30)
        if failures or left:
            raise KafkaOperationError(
                f"Kafka did not store the file: {failures[:1] or f'{left} unacknowledged'}"
            )

    async def content(self, meta: FileMeta) -> AsyncIterator[bytes]:
        """The file's bytes, chunk by chunk, in order."""
        wanted = {offset: i for i, offset in enumerate(meta.chunks)}
        if not wanted:
            return
        reader = self._reader()
        topic = self.settings.file_chunks_topic
        try:
            reader.assign([TopicPartition(topic, 0, meta.chunks[0])])
            next_index = 0
            while next_index < len(meta.chunks):
                # Chunks of uploads made at the same time interleave: skip what is not ours.
                # consume() waits for as many records as it asks for (ask for no more than are
                # left) and hands them over at once (a few chunks at a time keeps memory flat).
                wanted_now = min(2, len(meta.chunks) - next_index)
                for msg in await asyncio.to_thread(reader.consume, wanted_now, 1.0):
                    offset = msg.offset()
                    if msg.error() is not None or offset is None or wanted.get(offset) != next_index:
                        continue
                    next_index += 1
                    yield msg.value() or b""
                    if next_index < len(meta.chunks) and meta.chunks[next_index] != offset + 1:
                        reader.assign([TopicPartition(topic, 0, meta.chunks[next_index])])
                        break
        finally:
            reader.close()

    async def delete(self, meta: FileMeta) -> None:
        """Tombstones for the file's record and every chunk."""
        for i in range(len(meta.chunks)):
            produce(self._producer, self.settings.file_chunks_topic, None, f"{meta.id}/{i}".encode())
        self.table.delete(meta.id)
        await self._acknowledged([])


def open_files(settings: KafkaSettings) -> Files:
    """Files on `settings`' topics (the gateway ensures them), their records read to the end."""
    producer = Producer(producer_config(settings))
    records = Consumer(reader_config(settings, "sluice-files-reader"))
    table: Table[FileMeta] = Table(settings.files_topic, FileMeta.decode, records, producer)
    table.start(creator="sluice api")

    def reader() -> ReaderLike:
        # librdkafka prefetches up to 64 MiB per consumer by default: the whole of a large file.
        # A few chunks ahead is enough to stream, and keeps a download's memory flat. The fetch
        # limits count compressed bytes, and every lz4 batch a fetch brings is inflated whole: 1 MiB
        # of a repetitive 50,000-row file held 19 MiB (memray); 64 KiB brings a batch or two.
        limits = {
            "queued.max.messages.kbytes": 2 * CHUNK_BYTES // 1024,
            "fetch.max.bytes": 2 * CHUNK_BYTES,
            "max.partition.fetch.bytes": 64 * 1024,
            "fetch.queue.backoff.ms": 10,
        }
        return Consumer(reader_config(settings, f"sluice-file-content-{uuid.uuid4().hex[:8]}", **limits))

    return Files(settings, table, producer, reader)
