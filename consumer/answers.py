"""What the worker publishes for a job, built without I/O: the Result of a finished (or expired) job,
and the headers of a dead-lettered record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.engine import Completion
from sluice.contract import ErrorInfo, Job, ResultStatus, encode_result, job_digest
from sluice.errors import PermanentError, RetryableError
from sluice.offsets import TP

__all__ = ["MAX_COPIED_HEADER_BYTES", "Answer", "Cancelled", "answer", "dlq_headers"]

# A DLQ record keeps its source's headers up to this size: copied as they are they could push it
# over the broker's size limit, and a DLQ record that cannot be stored stops the worker for ever.
MAX_COPIED_HEADER_BYTES = 64 * 1024


class Cancelled:
    """The outcome of a job cancelled on request, before it started or while it ran."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A job's Result, encoded, with what the worker counts and logs of it."""

    status: ResultStatus
    data: bytes
    output_tokens: int
    error: ErrorInfo | None


def answer(
    job: Job,
    outcome: Completion | Cancelled | BaseException | None,
    enqueued_at: datetime | None,
    started_at: datetime,
    worker_id: str,
) -> Answer:
    """The Result of `job`: succeeded (a Completion), failed (an exception: a PermanentError's
    code, engine_transient_error for a RetryableError left after the retries, else engine_error),
    cancelled (Cancelled), or expired (None: its deadline passed before it ran)."""
    echoed: dict[str, Any] = {  # what every Result repeats from its job
        "model": job.model,
        "tenant": job.tenant,
        "webhook_url": job.webhook_url,
        "metadata": job.metadata,
        "job_digest": job_digest(job),
    }
    if outcome is None:
        error = ErrorInfo(code="deadline_exceeded", message=f"deadline {job.deadline} passed before it ran")
        return Answer("expired", encode_result(job.job_id, "expired", error=error, **echoed), 0, error)
    ran: dict[str, Any] = {
        **echoed,
        "enqueued_at": enqueued_at,
        "started_at": started_at,
        "worker_id": worker_id,
    }
    if isinstance(outcome, Cancelled):
        error = ErrorInfo(code="cancelled", message="cancelled on request")
        return Answer("cancelled", encode_result(job.job_id, "cancelled", error=error, **ran), 0, error)
    if isinstance(outcome, Completion):
        data = encode_result(
            job.job_id,
            "succeeded",
            output=outcome.output,
            finish_reason=outcome.finish_reason,
            prompt_tokens=outcome.prompt_tokens,
            output_tokens=outcome.output_tokens,
            **ran,
        )
        return Answer("succeeded", data, outcome.output_tokens, None)
    if isinstance(outcome, PermanentError):
        code = outcome.code
    elif isinstance(outcome, RetryableError):
        code = "engine_transient_error"
    else:
        code = "engine_error"
    error = ErrorInfo(code=code, message=str(outcome)[:2000])
    return Answer("failed", encode_result(job.job_id, "failed", error=error, **ran), 0, error)


def dlq_headers(
    source: Sequence[tuple[str, bytes]], code: str, reason: str, tp: TP, offset: int, worker_id: str
) -> list[tuple[str, bytes]]:
    """The source record's headers (unless too large) and why and where it was dead-lettered."""
    headers = list(source)
    if sum(len(k) + len(v) for k, v in headers) > MAX_COPIED_HEADER_BYTES:
        headers = [("sluice.headers.dropped", str(len(headers)).encode())]
    return [
        *headers,
        ("sluice.error.code", code.encode()),
        ("sluice.error.message", reason[:4000].encode()),
        ("sluice.source.topic", tp[0].encode()),
        ("sluice.source.partition", str(tp[1]).encode()),
        ("sluice.source.offset", str(offset).encode()),
        ("sluice.worker.id", worker_id.encode()),
    ]
