"""Batch rows in OpenAI's line formats, without I/O: an input line becomes a Job (or a line error
naming the field), and a Result becomes an output or error line whose body is a real
`chat.completion` / `text_completion` object.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from sluice.contract import Job

__all__ = ["ENDPOINTS", "LineError", "Row", "error_line", "job_id_for", "output_line", "parse_row"]

ENDPOINTS = ("/v1/chat/completions", "/v1/completions")
# Body fields each endpoint maps onto the Job; any other is a line error naming it.
_COMMON = {"model", "max_tokens", "temperature", "top_p", "stop", "seed"}
_FIELDS = {
    "/v1/chat/completions": _COMMON | {"messages", "max_completion_tokens", "response_format"},
    "/v1/completions": _COMMON | {"prompt"},
}


@dataclass(frozen=True)
class LineError(Exception):
    """What is wrong with one line: OpenAI's BatchError fields."""

    code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class Row:
    custom_id: str
    job: Job


def job_id_for(batch_id: str, custom_id: str) -> str:
    """The job id of a row: the same for the same batch and custom_id, whoever publishes it."""
    return f"{batch_id}:{hashlib.sha256(custom_id.encode()).hexdigest()[:24]}"


def parse_row(line: dict[str, Any], endpoint: str, batch_id: str, tenant: str, deadline: datetime) -> Row:
    """The Job of one input line {custom_id, method, url, body}; LineError when it cannot be one."""
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineError("invalid_custom_id", "custom_id must be a non-empty string", "custom_id")
    if line.get("method", "POST") != "POST":
        raise LineError("invalid_method", "method must be POST", "method")
    if line.get("url") != endpoint:
        raise LineError("mismatched_url", f"url must be the batch's endpoint {endpoint!r}", "url")
    body = line.get("body")
    if not isinstance(body, dict):
        raise LineError("invalid_body", "body must be an object", "body")
    unknown = sorted(set(body) - _FIELDS[endpoint])
    if unknown:
        raise LineError("unsupported_field", f"body.{unknown[0]} is not supported", f"body.{unknown[0]}")
    sampling: dict[str, Any] = {
        k: body[k] for k in ("temperature", "top_p", "seed") if body.get(k) is not None
    }
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        sampling["stop"] = [stop] if isinstance(stop, str) else stop
    schema = _schema(body.get("response_format"))
    if schema is not None:
        sampling["json_schema"] = schema
    spec: dict[str, Any] = {
        "job_id": job_id_for(batch_id, custom_id),
        "model": body.get("model"),
        "sampling": sampling,
        "tenant": tenant,
        "deadline": deadline,
        "metadata": {"batch_id": batch_id, "custom_id": custom_id},
    }
    if endpoint == "/v1/chat/completions":
        spec["messages"] = body.get("messages")
    else:
        spec["prompt"] = body.get("prompt")
    try:
        return Row(custom_id, Job.model_validate(spec))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()) if p != "sampling") or "body"
        raise LineError("invalid_request", f"{field}: {first['msg']}", f"body.{field}") from None


def _schema(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_schema", "text"):
        raise LineError(
            "unsupported_field",
            "body.response_format: only json_schema and text are supported",
            "body.response_format",
        )
    if response_format["type"] == "text":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        raise LineError(
            "invalid_request",
            "body.response_format.json_schema.schema must be an object",
            "body.response_format",
        )
    return schema


def _line_id(job_id: str) -> str:
    return f"batch_req_{hashlib.sha256(job_id.encode()).hexdigest()[:24]}"


def output_line(result: Mapping[str, Any], custom_id: str, endpoint: str) -> dict[str, Any]:
    """The output file's line for a succeeded result (its fields, as on the wire): response.body is
    the completion object. Rendering reads the fields as they are, without building a model."""
    job_id = str(result["job_id"])
    finished = result.get("finished_at")
    created = int(datetime.fromisoformat(finished).timestamp()) if isinstance(finished, str) else 0
    prompt_tokens, output_tokens = (
        int(result.get("prompt_tokens") or 0),
        int(result.get("output_tokens") or 0),
    )
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": prompt_tokens + output_tokens,
    }
    finish = result.get("finish_reason") if result.get("finish_reason") in ("stop", "length") else "stop"
    token = hashlib.sha256(job_id.encode()).hexdigest()[:24]
    output = result.get("output") or ""
    if endpoint == "/v1/chat/completions":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": output, "refusal": None},
            "finish_reason": finish,
            "logprobs": None,
        }
        body: dict[str, Any] = {"id": f"chatcmpl-{token}", "object": "chat.completion"}
    else:
        choice = {"index": 0, "text": output, "finish_reason": finish, "logprobs": None}
        body = {"id": f"cmpl-{token}", "object": "text_completion"}
    body |= {"created": created, "model": result.get("model") or "", "choices": [choice], "usage": usage}
    response = {"status_code": 200, "request_id": job_id, "body": body}
    return {"id": _line_id(job_id), "custom_id": custom_id, "response": response, "error": None}


def error_line(
    job_id: str, custom_id: str, code: str, message: str, status_code: int | None
) -> dict[str, Any]:
    """The error file's line: a failed request (with its status code) or one never answered
    (batch_expired, batch_cancelled: no response)."""
    response = None
    if status_code is not None:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        response = {"status_code": status_code, "request_id": job_id, "body": {"error": error}}
    return {
        "id": _line_id(job_id),
        "custom_id": custom_id,
        "response": response,
        "error": {"code": code, "message": message},
    }
