from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion

from gateway.rows import LineError, error_line, job_id_for, output_line, parse_row
from sluice.contract import Result, encode

DEADLINE = datetime(2026, 12, 1, tzinfo=UTC)
CHAT = "/v1/chat/completions"


def line(body: dict[str, object], url: str = CHAT, custom_id: str = "row-1") -> dict[str, object]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def test_a_chat_line_becomes_a_job_of_the_batch() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 7,
        "temperature": 0,
        "stop": "END",
        "seed": 3,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
    }
    row = parse_row(line(body), CHAT, "batch_1", "acme", DEADLINE)
    job = row.job
    assert row.custom_id == "row-1" and job.job_id == job_id_for("batch_1", "row-1")
    assert (job.tenant, job.deadline, job.metadata) == (
        "acme",
        DEADLINE,
        {"batch_id": "batch_1", "custom_id": "row-1"},
    )
    assert (job.sampling.max_tokens, job.sampling.stop, job.sampling.seed) == (7, ["END"], 3)
    assert job.sampling.json_schema == {"type": "object"} and job.messages is not None


@pytest.mark.parametrize(
    ("bad", "code", "param"),
    [
        (line({"model": "m", "messages": [], "n": 2}), "unsupported_field", "body.n"),
        (line({"model": "m", "prompt": "p"}, url="/v1/completions"), "mismatched_url", "url"),
        ({**line({"model": "m"}), "custom_id": 5}, "invalid_custom_id", "custom_id"),
        (
            line({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9}),
            "invalid_request",
            "body.temperature",
        ),
        (
            line(
                {
                    "model": "m",
                    "messages": [{"role": "user", "content": "x"}],
                    "response_format": {"type": "json_object"},
                }
            ),
            "unsupported_field",
            "body.response_format",
        ),
    ],
)
def test_a_line_that_cannot_be_a_job_is_an_error_naming_the_field(
    bad: dict[str, object], code: str, param: str
) -> None:
    with pytest.raises(LineError) as caught:
        parse_row(bad, CHAT, "batch_1", "acme", DEADLINE)
    assert (caught.value.code, caught.value.param) == (code, param)


def test_output_lines_hold_real_completion_objects() -> None:
    result = Result(
        job_id="batch_1:x",
        status="succeeded",
        model="m",
        output="hello",
        finish_reason="length",
        prompt_tokens=3,
        output_tokens=2,
    )
    chat = output_line(orjson.loads(encode(result)), "row-1", CHAT)
    assert chat["custom_id"] == "row-1" and chat["id"].startswith("batch_req_") and chat["error"] is None
    completion = ChatCompletion.model_validate(chat["response"]["body"])
    assert (
        completion.choices[0].message.content == "hello" and completion.choices[0].finish_reason == "length"
    )
    assert completion.usage is not None and completion.usage.total_tokens == 5
    text = Completion.model_validate(
        output_line(orjson.loads(encode(result)), "row-1", "/v1/completions")["response"]["body"]
    )
    assert text.choices[0].text == "hello"


def test_error_lines_carry_a_response_only_when_a_request_was_answered() -> None:
    failed = error_line("batch_1:x", "row-1", "prompt_too_long", "too long", 400)
    assert failed["response"]["status_code"] == 400 and failed["error"]["code"] == "prompt_too_long"
    expired = error_line("batch_1:y", "row-2", "batch_expired", "the batch expired first", None)
    assert expired["response"] is None and expired["error"]["code"] == "batch_expired"
