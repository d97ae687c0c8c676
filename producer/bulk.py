"""Bulk submission of a JSONL file: one job per line, bad lines reported, good lines sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from producer.client import JobProducer, Submitted, build_job
from producer.collect import Manifest, results_end_offsets
from sluice.contract import Job
from sluice.errors import BackpressureError, ContractError, KafkaOperationError
from sluice.urlpolicy import ForbiddenUrlError

__all__ = ["BadLine", "FileSummary", "submit_file"]


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was not submitted, and why."""

    line: int
    reason: str


@dataclass
class FileSummary:
    """What submit_file did."""

    submitted: int = 0
    acknowledged: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)

    def describe(self) -> str:
        bad = len(self.bad_lines)
        head = f"{self.acknowledged}/{self.submitted} jobs acknowledged by Kafka, {bad} bad lines"
        rows = [f"  line {b.line}: {b.reason}" for b in self.bad_lines[:50]]
        if len(self.bad_lines) > 50:
            rows.append(f"  ... and {len(self.bad_lines) - 50} more")
        return "\n".join([head, *rows])


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if line:
                yield number, line


def _submit_when_accepted(producer: JobProducer, job: Job, bar: tqdm[Any]) -> Future[Submitted]:
    """A bulk load waits out backpressure instead of failing half-way through the file."""
    while True:
        try:
            return producer.submit(job)
        except BackpressureError as exc:
            bar.set_postfix_str(f"waiting: {exc.lag} jobs ahead of the workers")
            time.sleep(max(0.5, producer.settings.lag_check_interval_s))


def submit_file(
    producer: JobProducer,
    path: Path,
    *,
    default_model: str | None = None,
    progress: bool = True,
    keep_ids: bool = True,
    manifest: Path | None = None,
) -> FileSummary:
    """Submit every valid line of `path`; collect bad lines with their number and reason.

    With `manifest`, also write what `sluice collect` needs to gather the file's results (see
    producer.collect); a job id that repeats an earlier line's is then a bad line, since its
    results could not be told apart.
    """
    summary = FileSummary()
    futures: list[tuple[int, str, Future[Submitted]]] = []
    seen: dict[str, int] = {}
    record = None
    if manifest is not None:
        topic = producer.settings.results_topic
        record = Manifest(str(path), topic, results_end_offsets(producer.settings, topic))
    bar = tqdm(desc=f"submit {path.name}", unit="job", disable=not progress)
    for number, line in _lines(path):
        try:
            job = build_job(orjson.loads(line), default_model)
            if record is not None:
                first = seen.setdefault(job.job_id, number)
                if first != number:
                    summary.bad_lines.append(BadLine(number, f"job_id {job.job_id!r} repeats line {first}"))
                    continue
            future = _submit_when_accepted(producer, job, bar)
        except orjson.JSONDecodeError as exc:
            summary.bad_lines.append(BadLine(number, f"not valid JSON: {exc}"))
            continue
        except (ContractError, ForbiddenUrlError) as exc:
            summary.bad_lines.append(BadLine(number, f"{exc.code}: {exc}"))
            continue
        futures.append((number, job.job_id, future))
        summary.submitted += 1
        if keep_ids:
            summary.job_ids.append(job.job_id)
        bar.update(1)
    producer.flush()
    bar.close()
    for number, job_id, future in futures:
        try:
            future.result()
            summary.acknowledged += 1
            if record is not None:
                record.jobs.append((number, job_id))
        except KafkaOperationError as exc:
            summary.bad_lines.append(BadLine(number, f"not stored by Kafka: {exc}"))
    summary.bad_lines.sort(key=lambda b: b.line)
    if record is not None and manifest is not None:
        record.rejected = [(b.line, b.reason) for b in summary.bad_lines]
        record.save(manifest)
    return summary
