from __future__ import annotations

from datetime import UTC, datetime

from consumer.answers import MAX_COPIED_HEADER_BYTES, answer, dlq_headers
from consumer.engine import Completion
from sluice.contract import Job, decode_result, job_digest
from sluice.errors import JobError, RetryableError

JOB = Job(job_id="j1", model="m", prompt="p", tenant="acme", metadata={"row": 3})
AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_a_completion_is_a_succeeded_result_echoing_the_job() -> None:
    done = answer(JOB, Completion("hi", "stop", 3, 1), AT, AT, "w1")
    result = decode_result(done.data)
    assert (done.status, done.output_tokens, done.error) == ("succeeded", 1, None)
    assert (result.output, result.finish_reason, result.prompt_tokens) == ("hi", "stop", 3)
    assert (result.tenant, result.metadata, result.worker_id) == ("acme", {"row": 3}, "w1")
    assert result.job_digest == job_digest(JOB) and result.started_at == AT


def test_failures_carry_a_code_per_kind_of_error() -> None:
    codes = [
        answer(JOB, exc, None, AT, "w1").error
        for exc in (JobError("prompt_too_long", "too long"), RetryableError("busy"), ValueError("bug"))
    ]
    assert [c.code for c in codes if c] == ["prompt_too_long", "engine_transient_error", "engine_error"]
    assert decode_result(answer(JOB, ValueError("x" * 5000), None, AT, "w1").data).error.message == "x" * 2000  # type: ignore[union-attr]


def test_no_outcome_means_the_deadline_passed() -> None:
    done = answer(JOB, None, None, AT, "w1")
    result = decode_result(done.data)
    assert done.status == "expired" and result.error is not None and result.error.code == "deadline_exceeded"
    assert result.worker_id is None  # it never ran


def test_dlq_headers_say_why_and_where_and_drop_oversized_source_headers() -> None:
    small = dlq_headers([("traceparent", b"00-x")], "invalid_json", "bad", ("jobs", 4), 17, "w1")
    assert small[0] == ("traceparent", b"00-x")
    assert (
        dict(small)["sluice.source.offset"] == b"17" and dict(small)["sluice.error.code"] == b"invalid_json"
    )
    huge = [("blob", b"x" * (MAX_COPIED_HEADER_BYTES + 1))]
    dropped = dlq_headers(huge, "c", "r", ("jobs", 0), 0, "w1")
    assert dropped[0] == ("sluice.headers.dropped", b"1") and "blob" not in dict(dropped)
