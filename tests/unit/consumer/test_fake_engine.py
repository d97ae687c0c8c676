from __future__ import annotations

import asyncio

import pytest

from consumer.engine import Engine, make_engine
from consumer.fake_engine import FAIL_MARKER, FakeEngine, fake_completion
from sluice.contract import Job, SamplingParams
from sluice.errors import ConfigError, PermanentError
from sluice.settings import WorkerSettings


def test_output_is_derived_from_the_prompt() -> None:
    c = fake_completion(Job(model="m", prompt="one two three"))
    assert (c.output, c.finish_reason, c.prompt_tokens, c.output_tokens) == ("three two one", "stop", 3, 3)
    c = fake_completion(Job(model="m", prompt="one two three", sampling=SamplingParams(max_tokens=2)))
    assert (c.output, c.finish_reason, c.output_tokens) == ("three two", "length", 2)


def test_factory_builds_the_fake_and_it_satisfies_the_protocol() -> None:
    engine = make_engine(WorkerSettings(engine="fake", fake_max_batch=3))
    assert isinstance(engine, FakeEngine) and isinstance(engine, Engine)
    assert engine.max_concurrency == 3


def test_vllm_engine_needs_a_model() -> None:
    with pytest.raises(ConfigError, match="needs a model"):
        make_engine(WorkerSettings(engine="vllm"))


def test_the_real_engine_is_the_default_and_the_fake_says_what_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from consumer.vllm_engine import VllmEngine

    assert WorkerSettings().engine == "vllm"
    engine = make_engine(WorkerSettings(model="/models/X"))  # not started: nothing is loaded
    assert isinstance(engine, VllmEngine) and engine.settings.model == "/models/X"
    with pytest.raises(ConfigError, match="needs a model"):
        make_engine(WorkerSettings())
    with caplog.at_level("WARNING", logger="sluice.engine"):
        make_engine(WorkerSettings(engine="fake"))
    assert "test double" in caplog.text and "not a model" in caplog.text


async def test_jobs_finish_out_of_order_and_slots_limit_concurrency() -> None:
    engine = FakeEngine(latency_s=0.0, tokens_per_s=200.0, max_batch=2)
    await engine.start()
    order: list[str] = []

    async def run(words: int, name: str) -> None:
        await engine.generate(Job(job_id=name, model="m", prompt=" ".join(["w"] * words)))
        order.append(name)

    await asyncio.gather(run(20, "long"), run(2, "short"), run(2, "queued"))
    # 'short' overtakes 'long'; 'queued' waits for a free slot, which 'short' frees first.
    assert order == ["short", "queued", "long"]


async def test_fail_marker_raises_a_permanent_error() -> None:
    engine = FakeEngine()
    await engine.start()
    with pytest.raises(PermanentError):
        await engine.generate(Job(model="m", prompt=f"x {FAIL_MARKER}"))
