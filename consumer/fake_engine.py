"""FakeEngine: a deterministic stand-in for vLLM, for tests, the demo and benchmarks. NOT a model.

It models a GPU engine coarsely: `max_batch` sequences run at once (further requests wait for a
slot, like vLLM's max_num_seqs); each takes `latency_s` plus output_tokens / `tokens_per_s`.
The output is derived from the prompt (its words reversed), so tests can check it exactly.
A prompt containing FAIL_MARKER fails that job permanently, to exercise per-job failure handling.
"""

from __future__ import annotations

import asyncio

from consumer.engine import Completion
from sluice.contract import Job
from sluice.errors import PermanentError

__all__ = ["FAIL_MARKER", "FakeEngine", "fake_completion"]

FAIL_MARKER = "[[fake-fail]]"


def _text(job: Job) -> str:
    return job.prompt if job.prompt is not None else " ".join(m.content for m in job.messages or [])


def fake_completion(job: Job) -> Completion:
    """The FakeEngine's answer to `job`: prompt words reversed, cut at max_tokens words."""
    words = _text(job).split()
    limit = job.sampling.max_tokens
    out = list(reversed(words))[:limit]
    reason = "length" if len(words) > limit else "stop"
    return Completion(" ".join(out), reason, prompt_tokens=len(words), output_tokens=len(out))


class FakeEngine:
    """Deterministic fake engine (see module docstring)."""

    def __init__(self, latency_s: float = 0.0, tokens_per_s: float = 0.0, max_batch: int = 256) -> None:
        self.latency_s = latency_s
        self.tokens_per_s = tokens_per_s
        self._max_batch = max_batch
        self._slots: asyncio.Semaphore | None = None

    @property
    def max_concurrency(self) -> int:
        return self._max_batch

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self._max_batch)

    async def generate(self, job: Job) -> Completion:
        if FAIL_MARKER in _text(job):
            raise PermanentError(f"fake engine refuses prompts containing {FAIL_MARKER}")
        result = fake_completion(job)
        delay = self.latency_s + (result.output_tokens / self.tokens_per_s if self.tokens_per_s else 0.0)
        if delay <= 0:
            return result
        assert self._slots is not None, "start() was not called"
        async with self._slots:
            await asyncio.sleep(delay)
        return result

    async def close(self) -> None:
        self._slots = None
