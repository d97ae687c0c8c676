"""Property-based fuzzing of the wire contract (hypothesis): whatever bytes arrive, decoding
either returns a valid object or raises ContractError with a code and at least one named
problem; it never raises anything else. 10,000+ generated cases per run in total."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from results_sink.deliveries import decode_delivery
from sluice.contract import Job, Result, decode_job, decode_result, encode
from sluice.errors import ContractError

FAST = settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
job_fields = [
    "v",
    "job_id",
    "model",
    "prompt",
    "messages",
    "sampling",
    "webhook_url",
    "tenant",
    "priority",
    "deadline",
    "metadata",
]
# Objects shaped like jobs: known field names with arbitrary values, plus the odd unknown field.
job_like = st.dictionaries(st.sampled_from([*job_fields, "extra"]), json_values, max_size=8).map(
    lambda d: {"v": 1, **d} if "v" not in d else d
)


def _decodes_or_explains(decode: Any, data: bytes) -> None:
    try:
        decode(data)
    except ContractError as exc:
        assert exc.code and exc.problems and all(p.field and p.reason for p in exc.problems)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    _decodes_or_explains(decode_job, data)
    _decodes_or_explains(decode_result, data)
    _decodes_or_explains(decode_delivery, data)


@FAST
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    data = orjson.dumps(value)
    _decodes_or_explains(decode_job, data)
    _decodes_or_explains(decode_result, data)


@FAST
@given(job_like)
def test_job_shaped_objects(value: dict[str, Any]) -> None:
    data = orjson.dumps(value)
    try:
        job = decode_job(data)
    except ContractError as exc:
        assert exc.problems
        return
    # What decodes must survive its own round trip unchanged.
    assert isinstance(job, Job) and decode_job(encode(job)) == job


@FAST
@given(st.text(max_size=200), st.integers(min_value=1, max_value=4096))
def test_valid_jobs_round_trip_and_results_too(prompt: str, max_tokens: int) -> None:
    job = Job(model="m", prompt=prompt or "x", sampling={"max_tokens": max_tokens})  # type: ignore[arg-type]
    assert decode_job(encode(job)) == job
    result = Result(job_id=job.job_id, status="succeeded", model="m", output=prompt)
    assert decode_result(encode(result)) == result
