from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from sluice.contract import (
    ErrorInfo,
    Job,
    Result,
    SamplingParams,
    decode_job,
    decode_result,
    encode,
    encode_result,
)
from sluice.errors import ContractError


def job_dict(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"v": 1, "job_id": "job-1", "model": "tiny", "prompt": "hello"}
    base.update(over)
    return base


def problems(data: object) -> tuple[str, dict[str, str]]:
    with pytest.raises(ContractError) as info:
        decode_job(orjson.dumps(data))
    return info.value.code, {p.field: p.reason for p in info.value.problems}


def test_job_round_trips_with_every_field() -> None:
    job = Job(
        job_id="a.b:c-1",
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],  # type: ignore[list-item]
        sampling=SamplingParams(max_tokens=5, temperature=0.0, top_p=0.9, stop=["\n"], seed=7),
        webhook_url="https://example.com/hook",
        tenant="team-a",
        priority="high",
        deadline=datetime(2030, 1, 1, tzinfo=UTC),
        metadata={"row": 3, "nested": {"x": [1, 2]}},
    )
    assert decode_job(encode(job)) == job


def test_defaults_fill_in_job_id_and_sampling() -> None:
    job = decode_job(orjson.dumps({"v": 1, "model": "m", "prompt": "p"}))
    assert len(job.job_id) == 32
    assert job.sampling == SamplingParams()


@pytest.mark.parametrize(
    ("data", "code", "field", "fragment"),
    [
        (
            {"v": 2, "model": "m", "prompt": "p"},
            "unsupported_schema_version",
            "v",
            "unsupported schema version 2",
        ),
        ({"model": "m", "prompt": "p"}, "unsupported_schema_version", "v", "None"),
        ({"v": "1", "model": "m", "prompt": "p"}, "unsupported_schema_version", "v", "'1'"),
        (
            job_dict(sampling={"temperature": 5}),
            "invalid_field",
            "sampling.temperature",
            "less than or equal to 2",
        ),
        (job_dict(sampling={"max_tokens": "10"}), "invalid_field", "sampling.max_tokens", "valid integer"),
        (
            job_dict(sampling={"max_tokens": 0}),
            "invalid_field",
            "sampling.max_tokens",
            "greater than or equal to 1",
        ),
        (job_dict(sampling={"top_p": 0}), "invalid_field", "sampling.top_p", "greater than 0"),
        (job_dict(model=None), "invalid_field", "model", "valid string"),
        (job_dict(prompt=None), "invalid_field", "prompt|messages", "exactly one of"),
        (
            job_dict(messages=[{"role": "user", "content": "x"}]),
            "invalid_field",
            "prompt|messages",
            "exactly one",
        ),
        (job_dict(messages=None, prompt=None), "invalid_field", "prompt|messages", "exactly one"),
        (job_dict(job_id="has space"), "invalid_field", "job_id", "should match pattern"),
        (job_dict(webhook_url="ftp://x"), "invalid_field", "webhook_url", "should match pattern"),
        (job_dict(priority="urgent"), "invalid_field", "priority", "'normal' or 'high'"),
        (job_dict(deadline="tomorrow"), "invalid_field", "deadline", "valid datetime"),
        (job_dict(colour="blue"), "invalid_field", "colour", "unknown field"),
        ({"v": 1, "prompt": "p"}, "invalid_field", "model", "required field is missing"),
    ],
)
def test_each_bad_field_is_named_with_the_reason(data: object, code: str, field: str, fragment: str) -> None:
    got_code, found = problems(data)
    assert got_code == code
    assert field in found, found
    assert fragment in found[field]


def test_all_problems_are_reported_at_once() -> None:
    _, found = problems(job_dict(sampling={"temperature": -1, "top_p": 3}, tenant=""))
    assert set(found) == {"sampling.temperature", "sampling.top_p", "tenant"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b"\xff\xfe", "invalid_json"),
        (None, "empty"),
    ],
)
def test_undecodable_bytes_are_rejected(raw: bytes | None, code: str) -> None:
    with pytest.raises(ContractError) as info:
        decode_job(raw)
    assert info.value.code == code


def test_integers_are_accepted_for_float_fields_but_booleans_are_not() -> None:
    assert decode_job(orjson.dumps(job_dict(sampling={"temperature": 1}))).sampling.temperature == 1.0
    _, found = problems(job_dict(sampling={"temperature": True}))
    assert "sampling.temperature" in found


def test_result_round_trips_and_rejects_unknown_status() -> None:
    result = Result(job_id="j", status="succeeded", output="hi", prompt_tokens=3, output_tokens=1)
    assert decode_result(encode(result)) == result
    with pytest.raises(ContractError) as info:
        decode_result(orjson.dumps({"v": 1, "job_id": "j", "status": "done"}))
    assert info.value.problems[0].field == "status"


@pytest.mark.parametrize(
    "fields",
    [
        {
            "status": "succeeded",
            "output": "hi ✓",
            "finish_reason": "stop",
            "prompt_tokens": 3,
            "output_tokens": 2,
        },
        {
            "status": "failed",
            "model": "m",
            "error": ErrorInfo(code="prompt_too_long", message="prompt is 9 tokens; the limit is 8"),
            "enqueued_at": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
            "started_at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
            "worker_id": "w-1",
            "tenant": "acme",
            "webhook_url": "https://example.com/hook",
            "metadata": {"row": 7, "nested": {"b": [1, 2.5, None], "a": "x"}},
            "job_digest": "d" * 32,
        },
        {"status": "expired", "error": ErrorInfo(code="deadline_exceeded", message="late")},
    ],
)
def test_the_fast_result_encoder_writes_what_the_model_writes(fields: dict[str, Any]) -> None:
    fast = orjson.loads(encode_result("job-1", **fields))
    model = orjson.loads(encode(Result(job_id="job-1", **fields)))
    assert isinstance(fast.pop("finished_at"), str) and isinstance(model.pop("finished_at"), str)
    assert list(fast.items()) == list(model.items())  # same fields, same values, same order
    assert decode_result(encode_result("job-1", **fields)).status == fields["status"]


def test_a_cancelled_result_is_version_2_and_every_other_result_stays_version_1() -> None:
    from sluice.contract import CANCELLED_VERSION, Result, _decode, decode_result, encode_result

    cancelled = encode_result("j1", "cancelled")
    assert (
        decode_result(cancelled).v == CANCELLED_VERSION == 2
        and decode_result(cancelled).status == "cancelled"
    )
    assert decode_result(encode_result("j2", "succeeded", output="x")).v == 1
    assert Result(job_id="j3", status="cancelled").v == 2
    # A reader that knows only version 1 refuses the cancelled result by its version, and reads the rest.
    old_reader = frozenset({1})
    with pytest.raises(ContractError) as caught:
        _decode(cancelled, Result, old_reader)
    assert caught.value.code == "unsupported_schema_version"
    assert _decode(encode_result("j2", "failed"), Result, old_reader).status == "failed"
    with pytest.raises(ContractError, match="needs schema version 2"):
        decode_result(b'{"v": 1, "job_id": "j4", "status": "cancelled"}')
