"""Sluice: LLM inference through Kafka. Shared code: contract, settings, Kafka helpers, CLI.

The names below load on first use, so importing one light module (sluice.errors, for a webhook
receiver's `results_sink.signing`) does not load pydantic and the contract.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sluice.errors import ContractError, PermanentError, RetryableError, SluiceError

if TYPE_CHECKING:
    from sluice.contract import Job, Result, SamplingParams, decode_job, decode_result, encode

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

_CONTRACT = {"Job", "Result", "SamplingParams", "decode_job", "decode_result", "encode"}


def __getattr__(name: str) -> Any:
    if name not in _CONTRACT:
        raise AttributeError(f"module 'sluice' has no attribute {name!r}")
    return getattr(importlib.import_module("sluice.contract"), name)
