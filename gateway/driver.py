"""Who drives each batch: the gateway replica that owns its partition of the batch work topic.

Gateways are members of one consumer group on `<batches_topic>.work`; creating a batch, and
cancelling one, is a record there keyed by the batch id, so one replica at a time owns a batch:
it validates the input file, publishes the rows as jobs, follows progress in the result store,
expires, cancels and finalizes it, and is the only writer of its record after creation. A
replica that dies hands its partitions to the others, which pick its batches up where the batch
records say they are (a batch still validating is validated and published again: rows are
keyed by batch id and custom_id, so a row published twice is answered once). A work record's
offset is committed once its batch has ended.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from gateway.batches import TERMINAL, Batch, Batches, BatchFiles, lines_of
from gateway.files import Files
from gateway.rows import LineError, job_id_for, parse_row
from producer.client import JobProducer
from sluice.cancels import Cancellations
from sluice.clients import ConsumerLike, ProducerLike
from sluice.commits import Committer
from sluice.contract import ErrorInfo, Job, encode_result
from sluice.errors import ContractError, KafkaOperationError
from sluice.kafka import produce
from sluice.offsets import TP, OffsetTracker
from sluice.store import ResultStore
from sluice.topics import route

__all__ = ["MAX_LINES", "BatchDriver"]

log = logging.getLogger("sluice.gateway.batches")

MAX_LINES = 50_000  # OpenAI's limit on a batch input file
_MAX_ERRORS = 100


class BatchDriver:
    """Advances the batches this replica owns (see the module docstring)."""

    def __init__(
        self,
        batches: Batches,
        files: Files,
        store: ResultStore,
        jobs: JobProducer,
        producer: ProducerLike,
        work: ConsumerLike,
        work_topic: str,
        results_topic: str,
        cancels: Cancellations,
        events_topic: str,
        cancel_grace_s: float = 60.0,
    ) -> None:
        self.cancels, self.events_topic = cancels, events_topic
        self.cancel_grace_s = cancel_grace_s
        self.batches, self.files, self.store, self.jobs = batches, files, store, jobs
        self.producer, self.work = producer, work
        self.work_topic, self.results_topic = work_topic, results_topic
        self._closing = False  # the work consumer closing: its last revoke must not commit
        self.rendered = BatchFiles(files, store, batches)
        self.tracker = OffsetTracker()
        self.committer = Committer(self.tracker, {work_topic: work}, interval_s=1.0)
        self._owned: dict[str, tuple[TP, int, int]] = {}  # batch id -> (partition, offset, epoch)
        self._cancels: set[str] = set()

    # ---- ownership -------------------------------------------------------------------------

    def request(self, batch_id: str, action: str) -> None:
        """Ask the batch's owner to start ("create") or cancel it ("cancel")."""
        produce(self.producer, self.work_topic, orjson.dumps({"action": action}), batch_id.encode())
        self.producer.poll(0)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.tracker.assign((p.topic, p.partition))
        consumer.incremental_assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        if not self._closing:  # from close(): committed just before (see the worker's _on_revoke)
            self.committer.commit(sync=True, tps=list(gone))
        self._forget(gone)
        consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._forget({(p.topic, p.partition) for p in partitions})
        consumer.incremental_unassign(partitions)

    def _forget(self, gone: set[TP]) -> None:
        for tp in gone:
            self.tracker.revoke(tp)
        for batch_id, (tp, _, _) in list(self._owned.items()):
            if tp in gone:
                del self._owned[batch_id]

    def _poll(self) -> None:
        for msg in self.work.consume(100, 0):
            if msg.error() is not None or msg.key() is None:
                continue
            tp, offset = (str(msg.topic()), int(msg.partition() or 0)), int(msg.offset() or 0)
            epoch = self.tracker.add(tp, offset)
            batch_id = (msg.key() or b"").decode()
            action = orjson.loads(msg.value() or b"{}").get("action")
            if action == "cancel":
                self._cancels.add(batch_id)
                self.tracker.done(tp, offset, epoch)  # the batch's own record keeps its place
            elif batch_id in self._owned:
                self.tracker.done(tp, offset, epoch)
            else:
                self._owned[batch_id] = (tp, offset, epoch)

    async def run(self, stop: asyncio.Event) -> None:
        self.work.subscribe(
            [self.work_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            while not stop.is_set():
                self._poll()
                for batch_id in list(self._owned):
                    try:
                        await self._advance(batch_id)
                    except Exception:  # Kafka or the store failed this time: the next turn tries again
                        log.exception("batch could not advance; trying again", extra={"batch_id": batch_id})
                self.committer.maybe_commit()
                self.producer.poll(0)
                await asyncio.sleep(0.2)
        finally:
            self.committer.commit(sync=True)
            self._closing = True
            self.work.close()

    # ---- the states ------------------------------------------------------------------------

    async def _advance(self, batch_id: str) -> None:
        batch = self.batches.get(batch_id)
        if batch is None:  # its record has not reached this replica yet
            return
        if batch.status == "in_progress" and batch_id in self._cancels:
            await self._cancelling(batch)
        elif batch.status not in TERMINAL and batch.status != "cancelling" and batch_id in self._cancels:
            await self._end(batch, "cancelled", cancelling=True)  # no row went out yet
        elif batch.status == "cancelling":
            await self._cancelled_when_answered(batch)
        elif batch.status == "validating":
            await self._start(batch)
        elif batch.status == "in_progress":
            await self._progress(batch)
        if batch.status in TERMINAL:
            tp, offset, epoch = self._owned.pop(batch_id)
            self._cancels.discard(batch_id)
            self.tracker.done(tp, offset, epoch)

    async def _start(self, batch: Batch) -> None:
        """Validate the input file as a whole; publish its rows; in_progress (or failed)."""
        meta = self.files.table.get(batch.input_file_id)
        errors = (
            []
            if meta is not None
            else [{"code": "file_not_found", "line": None, "message": "input file gone"}]
        )
        models: set[str] = set()
        rows = 0
        if meta is not None:
            rows, errors = await self._check(batch, meta, models)
        if errors:
            batch.errors = errors[:_MAX_ERRORS]
            await self._end(batch, "failed")
            return
        batch.model = next(iter(models), None)
        deadline = _utc(batch.expires_at)
        failures: list[BaseException] = []
        waiting: list[Job] = []
        assert meta is not None
        async for line in lines_of(self.files, meta):
            spec = orjson.loads(line)
            try:
                waiting.append(parse_row(spec, batch.endpoint, batch.id, batch.tenant, deadline).job)
            except LineError as exc:
                self._refuse(batch, spec["custom_id"], exc)
            if len(waiting) == 500:  # one trip to the producer's thread per 500 rows, not per row
                await asyncio.to_thread(self.jobs.send, waiting, failures)
                waiting = []
        await asyncio.to_thread(self.jobs.send, waiting, failures)
        if await asyncio.to_thread(self.jobs.flush) or failures:
            raise KafkaOperationError(
                f"rows of {batch.id} not stored: {failures[:1]}"
            )  # its owner tries again
        batch.total = rows
        batch.move("in_progress")
        self.batches.save(batch)
        log.info("batch in progress", extra={"batch_id": batch.id, "rows": rows})

    async def _check(self, batch: Batch, meta: Any, models: set[str]) -> tuple[int, list[dict[str, Any]]]:
        """The file's own rules: JSON lines, unique custom_ids, one url and one model, 1-50,000 lines."""
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        rows = 0
        async for line in lines_of(self.files, meta):
            rows += 1
            if rows > MAX_LINES:
                errors.append(_error("too_many_lines", rows, f"more than {MAX_LINES} lines"))
                break
            try:
                spec = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                errors.append(_error("invalid_json_line", rows, f"this line is not JSON: {exc}"))
                continue
            if not isinstance(spec, dict):
                errors.append(_error("invalid_json_line", rows, "this line is not a JSON object"))
                continue
            custom_id = spec.get("custom_id")
            if not isinstance(custom_id, str) or not custom_id:
                errors.append(
                    _error("missing_custom_id", rows, "custom_id must be a non-empty string", "custom_id")
                )
            elif custom_id in seen:
                errors.append(
                    _error("duplicate_custom_id", rows, f"custom_id {custom_id!r} repeats", "custom_id")
                )
            else:
                seen.add(custom_id)
            if spec.get("url") != batch.endpoint:
                message = f"url {spec.get('url')!r} is not the batch's endpoint {batch.endpoint!r}"
                errors.append(_error("mismatched_url", rows, message, "url"))
            body = spec.get("body")
            if isinstance(body, Mapping) and isinstance(body.get("model"), str):
                models.add(body["model"])
            if len(errors) >= _MAX_ERRORS:
                break
        if rows == 0:
            errors.append(_error("empty_file", None, "the input file has no lines"))
        return rows, errors + self._check_models(models)

    def _check_models(self, models: set[str]) -> list[dict[str, Any]]:
        """One model per batch, and one a worker pool serves."""
        errors = []
        if len(models) > 1:
            errors.append(
                _error("mixed_models", None, f"one model per batch; this file names {sorted(models)}")
            )
        for model in sorted(models):
            try:
                route(self.jobs.settings, model)
            except ContractError as exc:
                errors.append(_error("model_not_found", None, exc.problems[0].reason, "body.model"))
        return errors

    def _refuse(self, batch: Batch, custom_id: str, exc: LineError) -> None:
        """A row that cannot be a job: its failed Result, on the results topic like any other."""
        job_id = job_id_for(batch.id, custom_id)
        error = ErrorInfo(code=exc.code, message=exc.message)
        metadata = {"batch_id": batch.id, "custom_id": custom_id}
        value = encode_result(job_id, "failed", error=error, tenant=batch.tenant, metadata=metadata)
        produce(self.producer, self.results_topic, value, job_id.encode())

    async def _progress(self, batch: Batch) -> None:
        counts = self.store.counts(f"{batch.id}:")
        completed = counts.get("succeeded", 0)
        failed = counts.get("failed", 0) + counts.get("expired", 0) + counts.get("cancelled", 0)
        if completed + failed >= batch.total:
            await self._end(batch, "completed")
        elif time.time() >= batch.expires_at:
            await self._end(batch, "expired")
        elif (completed, failed) != (batch.completed, batch.failed):
            batch.completed, batch.failed = completed, failed
            self.batches.save(batch)

    async def _cancelling(self, batch: Batch) -> None:
        """Tell the workers (rows still queued never start, those running stop), then wait in
        "cancelling" for every row's answer, as OpenAI's batches do: a row that finished just before
        its cancel reached a worker then counts as completed in the counts and the files alike."""
        await self._cancel_rows(batch)
        batch.move("cancelling")
        self.batches.save(batch)

    async def _cancelled_when_answered(self, batch: Batch) -> None:
        counts = self.store.counts(f"{batch.id}:")
        waited = time.time() - batch.times.get("cancelling_at", 0)
        if sum(counts.values()) >= batch.total or waited >= self.cancel_grace_s:
            await self._end(batch, "cancelled")  # rows still unanswered: batch_cancelled lines

    async def _end(self, batch: Batch, status: str, cancelling: bool = False) -> None:
        """Final counts and usage from the results, the sizes of its files, and the final state."""
        if status != "failed":
            if cancelling and batch.status != "cancelling":
                batch.move("cancelling")
            batch.move("finalizing")
            if not batch.total:  # cancelled before its rows went out: every row is unanswered
                batch.total = sum([1 async for _ in self.rendered.custom_ids(batch)])
            if cancelling:  # its rows still queued never start, those running stop
                await self._cancel_rows(batch)
            self._tally(batch)
        batch.move(status)
        if status != "failed":
            batch.output_bytes = await self._size(batch, "output")
            batch.error_bytes = await self._size(batch, "errors")
        self.batches.save(batch)
        self._announce(batch)
        log.info("batch ended", extra={"batch_id": batch.id, "status": status})

    def _announce(self, batch: Batch) -> None:
        """The batch's end as OpenAI's webhook event, for the sink to deliver to its tenant's
        subscriptions; the same id whoever announces it, so a repeat has the same webhook-id."""
        kind = f"batch.{batch.status}"
        event_id = "evt_" + hashlib.sha256(f"{batch.id}/{kind}".encode()).hexdigest()[:24]
        event = {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created_at": batch.times.get(f"{batch.status}_at", int(time.time())),
            "data": {"id": batch.id},
        }
        headers = [("sluice.tenant", batch.tenant.encode())]
        produce(self.producer, self.events_topic, orjson.dumps(event), event_id.encode(), headers)

    async def _cancel_rows(self, batch: Batch) -> None:
        unanswered = []
        async for custom_id in self.rendered.custom_ids(batch):
            job_id = job_id_for(batch.id, custom_id)
            if self.store.result(job_id) is None:
                unanswered.append(job_id)
        self.cancels.request(unanswered)

    async def _size(self, batch: Batch, kind: str) -> int:
        """The bytes of a rendered file: rendered once here and counted, not stored."""
        size = 0
        async for line in self.rendered.lines(batch, kind):
            size += len(line)
        return size

    def _tally(self, batch: Batch) -> None:
        completed = input_tokens = output_tokens = 0
        for body in self.store.bodies(f"{batch.id}:"):
            result = orjson.loads(body)  # the store holds only results that parsed
            if result.get("status") == "succeeded":
                completed += 1
                input_tokens += int(result.get("prompt_tokens") or 0)
                output_tokens += int(result.get("output_tokens") or 0)
        batch.completed, batch.failed = completed, batch.total - completed
        batch.input_tokens, batch.output_tokens = input_tokens, output_tokens


def _error(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "line": line, "message": message, "param": param}


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
