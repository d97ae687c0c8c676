"""The wire contract: versioned Job and Result records, orjson-encoded.

A record carries its schema version in `v`. Decoding checks the version first and rejects any
version it does not know rather than guessing; then it validates every field and reports each
problem as `field: reason (got <value>)`.

Results have two versions. Version 2 adds one status, `cancelled`, and is written only for
cancelled results: every other result stays version 1, readable by readers that know only
version 1, and such a reader refuses a cancelled result by its version (as it refuses any record
it does not know) instead of misreading it. This reader reads both.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sluice.errors import ContractError, FieldProblem

__all__ = [
    "CANCELLED_VERSION",
    "SCHEMA_VERSION",
    "ChatMessage",
    "ErrorInfo",
    "Job",
    "Result",
    "ResultStatus",
    "SamplingParams",
    "decode_job",
    "decode_result",
    "encode",
    "encode_result",
    "job_digest",
    "new_job_id",
    "utcnow",
]

SCHEMA_VERSION = 1
CANCELLED_VERSION = 2  # the Result version that adds status "cancelled"
_JOB_VERSIONS = frozenset({SCHEMA_VERSION})
_RESULT_VERSIONS = frozenset({SCHEMA_VERSION, CANCELLED_VERSION})
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"
MAX_PROMPT_CHARS = 1_000_000

# Timestamps arrive as RFC 3339 strings (or unix seconds); everything else is strict: "5" is not 5.
Timestamp = Annotated[datetime, Field(strict=False)]


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the contract uses."""
    return datetime.now(UTC)


def new_job_id() -> str:
    """A fresh job id for callers that do not bring their own."""
    return uuid.uuid4().hex


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class SamplingParams(_Record):
    """Per-job sampling parameters (the vLLM/OpenAI names and ranges)."""

    max_tokens: int = Field(256, ge=1, le=1_000_000)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=16)
    seed: int | None = None
    json_schema: dict[str, Any] | None = None

    @field_validator("temperature", "top_p", mode="before")
    @classmethod
    def _int_is_a_number(cls, value: Any) -> Any:
        # JSON has one number type: 1 and 1.0 are both acceptable here; True is not.
        return float(value) if type(value) is int else value


class ChatMessage(_Record):
    """One chat turn, rendered with the model's chat template by the engine."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


class Job(_Record):
    """An inference job. `job_id` is the Kafka key and the idempotency key."""

    v: int = SCHEMA_VERSION
    job_id: str = Field(default_factory=new_job_id, pattern=JOB_ID_PATTERN)
    model: str = Field(min_length=1, max_length=256)
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=1024)
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams())
    webhook_url: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s]+$")
    tenant: str | None = Field(None, min_length=1, max_length=128)
    priority: Literal["normal", "high"] = "normal"
    deadline: Timestamp | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    submitted_at: Timestamp = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _one_input(self) -> Job:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("exactly one of 'prompt' or 'messages' must be given")
        return self


class ErrorInfo(_Record):
    """Why a job did not succeed: a stable machine-readable code and a human message."""

    code: str
    message: str


ResultStatus = Literal["succeeded", "failed", "expired", "cancelled"]


class Result(_Record):
    """The outcome of one job, keyed by job_id on the results topic."""

    v: int = SCHEMA_VERSION
    job_id: str
    status: ResultStatus
    model: str | None = None
    output: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    enqueued_at: Timestamp | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp = Field(default_factory=utcnow)
    error: ErrorInfo | None = None
    worker_id: str | None = None
    tenant: str | None = None
    webhook_url: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # job_digest() of the job this answers: tells a resubmission of the same job from a different
    # job that reuses its id.
    job_digest: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _cancelled_is_version_2(cls, data: Any) -> Any:
        # Built in code (not decoded), a cancelled result gets the version that knows its status.
        if isinstance(data, dict) and data.get("status") == "cancelled" and "v" not in data:
            return {**data, "v": CANCELLED_VERSION}
        return data

    @model_validator(mode="after")
    def _status_in_version(self) -> Result:
        if self.status == "cancelled" and self.v < CANCELLED_VERSION:
            raise ValueError(f"status 'cancelled' needs schema version {CANCELLED_VERSION}")
        return self


def job_digest(job: Job) -> str:
    """A fingerprint of what a job asks for (everything but when it was submitted)."""
    content = orjson.dumps(job.model_dump(mode="json", exclude={"submitted_at"}), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(content).hexdigest()[:32]


def encode_result(
    job_id: str,
    status: ResultStatus,
    *,
    model: str | None = None,
    output: str | None = None,
    finish_reason: str | None = None,
    prompt_tokens: int = 0,
    output_tokens: int = 0,
    enqueued_at: datetime | None = None,
    started_at: datetime | None = None,
    error: ErrorInfo | None = None,
    worker_id: str | None = None,
    tenant: str | None = None,
    webhook_url: str | None = None,
    metadata: dict[str, Any] | None = None,
    job_digest: str | None = None,
) -> bytes:
    """encode(Result(...)) without building the model: the worker's hot path, where every value
    comes from a validated Job or from the engine. Byte for byte the same as encode(Result(...))
    (tests/unit/sluice/test_contract.py holds it to that); building and dumping the model cost ~8 % of a
    job with an instant engine."""
    return orjson.dumps(
        {
            "v": CANCELLED_VERSION if status == "cancelled" else SCHEMA_VERSION,
            "job_id": job_id,
            "status": status,
            "model": model,
            "output": output,
            "finish_reason": finish_reason,
            "prompt_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "enqueued_at": enqueued_at,
            "started_at": started_at,
            "finished_at": utcnow(),
            "error": None if error is None else {"code": error.code, "message": error.message},
            "worker_id": worker_id,
            "tenant": tenant,
            "webhook_url": webhook_url,
            "metadata": {} if metadata is None else metadata,
            "job_digest": job_digest,
        }
    )


def encode(record: BaseModel) -> bytes:
    """Serialize a record for the wire (orjson; None fields kept so the shape is stable)."""
    return orjson.dumps(record.model_dump())


R = TypeVar("R", Job, Result)


def _decode(data: bytes | str | None, model: type[R], versions: frozenset[int]) -> R:
    if data is None:
        raise ContractError("empty", [FieldProblem("<value>", "message has no value")])
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ContractError("invalid_json", [FieldProblem("<value>", f"not valid JSON: {exc}")]) from None
    if not isinstance(obj, dict):
        found = type(obj).__name__
        raise ContractError(
            "not_an_object", [FieldProblem("<value>", f"expected a JSON object, got {found}")]
        )
    version = obj.get("v", None)
    if type(version) is not int or version not in versions:
        supported = sorted(versions)
        raise ContractError(
            "unsupported_schema_version",
            [
                FieldProblem(
                    "v",
                    f"unsupported schema version {_show(version)}; this reader knows {supported}",
                )
            ],
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise ContractError("invalid_field", _problems(exc)) from None


def decode_job(data: bytes | str | None) -> Job:
    """Decode and validate a Job; raises ContractError naming every wrong field."""
    return _decode(data, Job, _JOB_VERSIONS)


def decode_result(data: bytes | str | None) -> Result:
    """Decode and validate a Result; raises ContractError naming every wrong field."""
    return _decode(data, Result, _RESULT_VERSIONS)


def _problems(exc: ValidationError) -> list[FieldProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "<value>"
        reason = err["msg"]
        if err["type"] == "missing":
            reason = "required field is missing"
        elif err["type"] == "extra_forbidden":
            reason = "unknown field"
        elif err["type"] == "value_error":
            reason = reason.removeprefix("Value error, ")
            if not err["loc"]:
                field = "prompt|messages"
        else:
            reason = f"{reason} (got {_show(err.get('input'))})"
        problems.append(FieldProblem(field, reason))
    return problems


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
