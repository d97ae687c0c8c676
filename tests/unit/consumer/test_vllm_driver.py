"""EngineThread (SLUICE_WORKER_VLLM_DRIVER=thread) on a fake of vLLM's LLMEngine: a request vLLM
refuses fails alone, a cancelled job is aborted inside the engine, a dead engine fails every
waiting job and every later one (as an engine death: the worker exits, jobs stay uncommitted),
close() ends the thread. The real LLMEngine runs under it in
tests/integration/test_vllm_worker.py."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from consumer.vllm_driver import EngineThread
from consumer.vllm_engine import VllmEngine, _engine_args
from sluice.errors import ConfigError, EngineDeadError
from sluice.settings import EngineSettings


@dataclass
class Out:
    request_id: str
    finished: bool
    tokens: int


class FakeLLMEngine:
    """A fake of vllm's LLMEngine: each request finishes after `steps` steps; prompt "refuse" is
    refused by add_request; `die` makes the next step raise. Records aborts and the threads used."""

    def __init__(self, steps: int = 3) -> None:
        self.steps = steps
        self.running: dict[str, int] = {}
        self.aborted: list[str] = []
        self.threads: set[str] = set()
        self.die: BaseException | None = None
        self.hold = threading.Event()
        self.hold.set()

    def has_unfinished_requests(self) -> bool:
        return bool(self.running)

    def add_request(self, request_id: str, prompt: Any, params: Any, lora_request: Any = None) -> str:
        self.threads.add(threading.current_thread().name)
        if prompt == "refuse":
            raise ValueError("prompt is too long")
        self.running[request_id] = 0
        return request_id

    def abort_request(self, request_ids: list[str]) -> None:
        self.aborted.extend(request_ids)
        for r in request_ids:
            self.running.pop(r, None)

    def step(self) -> list[Out]:
        self.threads.add(threading.current_thread().name)
        self.hold.wait()
        if self.die is not None:
            raise self.die
        outs = []
        for r in list(self.running):
            self.running[r] += 1
            done = self.running[r] >= self.steps
            outs.append(Out(r, done, self.running[r]))
            if done:
                del self.running[r]
        return outs


async def test_every_request_gets_its_own_final_output_from_the_engine_thread() -> None:
    engine = FakeLLMEngine()
    driver = EngineThread(engine)
    try:
        outs = await asyncio.gather(*(driver.submit(f"r{i}", "p", None, None) for i in range(50)))
    finally:
        driver.close()
    assert [o.request_id for o in outs] == [f"r{i}" for i in range(50)]
    assert all(o.finished and o.tokens == 3 for o in outs)
    assert engine.threads == {"vllm-engine"}  # vLLM is never called from the event loop


async def test_a_refused_request_fails_alone() -> None:
    driver = EngineThread(FakeLLMEngine())
    try:
        results = await asyncio.gather(
            driver.submit("ok-1", "p", None, None),
            driver.submit("bad", "refuse", None, None),
            driver.submit("ok-2", "p", None, None),
            return_exceptions=True,
        )
    finally:
        driver.close()
    assert [getattr(r, "request_id", None) for r in results] == ["ok-1", None, "ok-2"]
    assert isinstance(results[1], ValueError) and "too long" in str(results[1])


async def test_a_cancelled_job_is_aborted_inside_the_engine() -> None:
    engine = FakeLLMEngine(steps=10**9)  # never finishes on its own
    vllm = VllmEngine(EngineSettings(model="m"))
    vllm._thread = EngineThread(engine)
    try:
        task = asyncio.create_task(vllm._final("p", None, "slow", None))
        other = asyncio.create_task(vllm._final("p", None, "other", None))
        while len(engine.running) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while "slow" in engine.running:
            await asyncio.sleep(0.01)
    finally:
        vllm._thread.close()
    assert engine.aborted == ["slow"]
    assert list(engine.running) == ["other"]
    with pytest.raises(EngineDeadError, match="closed"):  # not a failed result: left uncommitted
        await other


async def test_a_job_on_a_dead_engine_thread_is_an_engine_death_not_a_failed_job() -> None:
    engine = FakeLLMEngine(steps=10**9)
    vllm = VllmEngine(EngineSettings(model="m"))
    vllm._thread = EngineThread(engine)
    waiting = asyncio.create_task(vllm._final("p", None, "r1", None))
    while "r1" not in engine.running:
        await asyncio.sleep(0.01)
    engine.die = KeyError("a bug inside step()")  # not vLLM's EngineDeadError
    with pytest.raises(EngineDeadError, match="KeyError"):
        await waiting
    with pytest.raises(EngineDeadError, match="a bug inside"):  # and every job after it
        await vllm._final("p", None, "r2", None)
    vllm._thread.close()


async def test_a_refused_request_on_a_live_engine_thread_stays_that_jobs_error() -> None:
    vllm = VllmEngine(EngineSettings(model="m"))
    vllm._thread = EngineThread(FakeLLMEngine())
    try:
        with pytest.raises(ValueError, match="too long"):
            await vllm._final("refuse", None, "bad", None)
        assert (await vllm._final("p", None, "ok", None)).finished
    finally:
        vllm._thread.close()


async def test_a_dead_engine_fails_every_waiting_job_and_every_later_one() -> None:
    engine = FakeLLMEngine(steps=10**9)
    driver = EngineThread(engine)
    waiting = [driver.submit(f"r{i}", "p", None, None) for i in range(5)]
    while len(engine.running) < 5:
        await asyncio.sleep(0.01)
    engine.die = RuntimeError("engine core died")
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "core died" in str(r) for r in results)
    with pytest.raises(RuntimeError, match="core died"):
        driver.submit("later", "p", None, None)
    driver.close()


async def test_close_ends_the_thread_and_fails_every_job_left() -> None:
    engine = FakeLLMEngine()
    engine.hold.clear()  # the thread is held inside a step
    driver = EngineThread(engine)
    started = driver.submit("started", "p", None, None)
    while "started" not in engine.running:
        await asyncio.sleep(0.01)
    driver._inbox.put(("stop",))
    queued = driver.submit("queued", "p", None, None)  # behind the stop: never reaches vLLM
    engine.hold.set()
    driver.close()
    assert not driver._thread.is_alive()
    for fut in (started, queued):
        with pytest.raises(RuntimeError, match="closed"):
            await fut
    assert "queued" not in engine.running
    with pytest.raises(RuntimeError, match="closed"):
        driver.submit("after", "p", None, None)


def test_an_engine_argument_vllm_does_not_know_is_a_setting_error_naming_it() -> None:
    @dataclass
    class FakeEngineArgs:  # a fake of vLLM's EngineArgs dataclass
        model: str = ""
        enable_prefix_caching: bool = True

    settings = EngineSettings(model="m", engine_args={"enable_prefix_caching": False, "bogus_arg": 1})
    with pytest.raises(ConfigError, match="SLUICE_WORKER_ENGINE_ARGS: bogus_arg: not an argument"):
        _engine_args(FakeEngineArgs, settings)
