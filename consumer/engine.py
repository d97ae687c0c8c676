"""The Engine protocol: what a worker needs from an inference engine, and the factory.

Engines are asynchronous and continuously batching: the worker calls `generate` once per job as
jobs are polled, many run at once, and they finish in any order. Cancelling the awaiting task
aborts the request (a revoked partition, a shutdown). `generate` raises PermanentError for a job
that can never succeed (the worker publishes a failed Result), RetryableError for a transient
failure, and EngineDeadError when the engine itself is gone (the worker stops).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sluice.contract import Job
from sluice.errors import ConfigError
from sluice.settings import WorkerSettings

__all__ = ["Completion", "Engine", "make_engine"]

log = logging.getLogger("sluice.engine")


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished generation."""

    output: str
    finish_reason: str
    prompt_tokens: int
    output_tokens: int


@runtime_checkable
class Engine(Protocol):
    """An async, continuously batching inference engine."""

    @property
    def max_concurrency(self) -> int:
        """How many requests the engine batches at once (vLLM's max_num_seqs)."""
        ...

    async def start(self) -> None:
        """Load the model; called once before the first generate."""
        ...

    async def generate(self, job: Job) -> Completion:
        """Run one job to completion."""
        ...

    async def close(self) -> None:
        """Release the engine's resources."""
        ...


def make_engine(settings: WorkerSettings) -> Engine:
    """Build the engine named by `settings.engine`."""
    if settings.engine == "fake":
        from consumer.fake_engine import FakeEngine

        log.warning(
            "engine 'fake' (SLUICE_WORKER_ENGINE=fake or --engine fake): a test double that answers "
            "with the prompt's words reversed, not a model; use --engine vllm to run a model"
        )
        return FakeEngine(
            latency_s=settings.fake_latency_s,
            tokens_per_s=settings.fake_tokens_per_s,
            max_batch=settings.fake_max_batch,
        )
    if settings.engine == "vllm":
        from consumer.vllm_engine import VllmEngine

        if not settings.model:
            raise ConfigError("engine 'vllm' needs a model (SLUICE_WORKER_MODEL or --model)")
        return VllmEngine(settings)
    raise AssertionError(f"unknown engine {settings.engine!r}")  # settings validation forbids this
