"""Sluice: LLM inference through Kafka. Shared code: contract, settings, Kafka helpers, CLI."""

from sluice.contract import Job, Result, SamplingParams, decode_job, decode_result, encode
from sluice.errors import ContractError, PermanentError, RetryableError, SluiceError

__all__ = [
    "ContractError",
    "Job",
    "PermanentError",
    "Result",
    "RetryableError",
    "SamplingParams",
    "SluiceError",
    "decode_job",
    "decode_result",
    "encode",
]
