"""Sluice's exceptions: one root, split by what the caller should do next.

    SluiceError
    ├── ConfigError          settings or environment are unusable (missing Java, bad option)
    ├── PermanentError       this input can never succeed: send it to the DLQ / a failed result
    │   ├── ContractError    a Job or Result failed to decode or validate
    │   ├── JobError         the engine cannot run this job (unknown model, prompt too long, ...)
    │   ├── ForbiddenUrlError          a webhook URL the policy refuses (sluice/urlpolicy.py)
    │   ├── ManifestError              a submit-file manifest that cannot be read (producer/collect.py)
    │   └── WebhookVerificationError   a webhook whose signature does not verify (results_sink/signing.py)
    ├── RetryableError       this attempt failed, a later one may succeed
    │   └── BackpressureError  the workers are too far behind: submit again later (HTTP 429)
    ├── KafkaOperationError  a Kafka client call failed (wraps confluent_kafka.KafkaError)
    └── EngineDeadError      the engine cannot serve anything more: commit what is done, exit non-zero

"This job failed" (PermanentError, RetryableError) is kept apart from "this process cannot go on"
(EngineDeadError, ConfigError), as vLLM keeps EngineGenerateError apart from EngineDeadError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BackpressureError",
    "ConfigError",
    "ContractError",
    "EngineDeadError",
    "FieldProblem",
    "JobError",
    "KafkaOperationError",
    "PermanentError",
    "RetryableError",
    "SluiceError",
]


class SluiceError(Exception):
    """Root of every error Sluice raises on purpose."""

    code = "sluice_error"


class ConfigError(SluiceError):
    """Settings or the environment make it impossible to start (a missing tool, a bad option)."""

    code = "config_error"


class PermanentError(SluiceError):
    """The input itself is wrong; retrying it cannot help."""

    code = "permanent_error"


class JobError(PermanentError):
    """The engine refused or failed this one job; `code` says why, machine-readably."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RetryableError(SluiceError):
    """A transient failure; the same input may succeed on a later attempt."""

    code = "retryable_error"


class BackpressureError(RetryableError):
    """The jobs topic's consumer lag is above the configured limit; nothing was submitted."""

    code = "backpressure"

    def __init__(self, message: str, lag: int, limit: int) -> None:
        super().__init__(message)
        self.lag = lag
        self.limit = limit


class KafkaOperationError(SluiceError):
    """A Kafka client operation failed; `kafka_error` holds the client's error object."""

    code = "kafka_error"

    def __init__(self, message: str, kafka_error: object | None = None) -> None:
        super().__init__(message)
        self.kafka_error = kafka_error


class EngineDeadError(SluiceError):
    """The inference engine died; no further job can run in this process."""

    code = "engine_dead"


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one field: where it is, what was found, what was expected."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class ContractError(PermanentError):
    """A record on the wire is not a valid Job/Result.

    `code` is machine-readable (invalid_json, not_an_object, unsupported_schema_version,
    invalid_field); `problems` lists every field that is wrong and why.
    """

    def __init__(self, code: str, problems: Sequence[FieldProblem]) -> None:
        self.code = code
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or code)
