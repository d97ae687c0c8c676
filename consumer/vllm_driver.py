"""vLLM's engine stepped by a thread of its own, as LLM.generate steps it (the default driver).

AsyncLLM (SLUICE_WORKER_VLLM_DRIVER=async) runs vLLM's output handling as a task on the worker's
event loop, one async generator per request. This driver instead owns a synchronous LLMEngine: one
thread adds the requests handed to it, calls step() while any is unfinished (each step returns the
requests that finished in it) and resolves each request's asyncio future on the loop that submitted
it. vLLM's per-step work then runs beside the event loop rather than on it, and it is exactly the
path of the offline LLM.generate.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Any

__all__ = ["EngineThread"]


def _resolve(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():  # the job was cancelled meanwhile
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


Loop = asyncio.AbstractEventLoop


def _post(loop: Loop, fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    """Resolve fut on its own loop, from this thread; a loop already closed has no one waiting."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, fut, value, error)


class EngineThread:
    """Steps one vLLM LLMEngine in a daemon thread; submit() is called from the event loop."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._waiting: dict[str, tuple[Loop, asyncio.Future[Any]]] = {}
        self._dead: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vllm-engine", daemon=True)
        self._thread.start()

    @property
    def dead(self) -> bool:
        """The thread has stopped (closed, or the engine raised): nothing more can be served."""
        return self._dead is not None

    def submit(self, request_id: str, prompt: Any, params: Any, lora: Any) -> asyncio.Future[Any]:
        """A future of the request's final RequestOutput (or of the error vLLM raised for it)."""
        if self._dead is not None:
            raise self._dead
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._inbox.put(("add", request_id, prompt, params, lora, loop, fut))
        return fut

    def abort(self, request_id: str) -> None:
        self._inbox.put(("abort", request_id))

    def close(self, timeout_s: float = 30.0) -> None:
        self._inbox.put(("stop",))
        self._thread.join(timeout_s)

    # ---- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        error: BaseException = RuntimeError("the vLLM engine was closed")
        try:
            while self._take_commands():
                if self.engine.has_unfinished_requests():
                    for out in self.engine.step():
                        if out.finished and (w := self._waiting.pop(out.request_id, None)):
                            _post(w[0], w[1], out, None)
        except BaseException as exc:  # the engine is gone: every waiting job learns why
            error = exc
        self._dead = error
        for loop, fut in self._waiting.values():
            _post(loop, fut, None, error)
        self._waiting.clear()
        self._fail_inbox(error)

    def _take_commands(self) -> bool:
        """Apply every queued command, waiting for one when the engine is idle; False: stop."""
        block = not self.engine.has_unfinished_requests()
        while True:
            try:
                cmd = self._inbox.get(block=block)
            except queue.Empty:
                return True
            block = False
            if cmd[0] == "stop":
                return False
            if cmd[0] == "abort":
                if self._waiting.pop(cmd[1], None) is not None:
                    self.engine.abort_request([cmd[1]])
                continue
            _, request_id, prompt, params, lora, loop, fut = cmd
            try:
                self.engine.add_request(request_id, prompt, params, lora_request=lora)
            except Exception as exc:  # vLLM refused this request alone
                _post(loop, fut, None, exc)
            else:
                self._waiting[request_id] = (loop, fut)

    def _fail_inbox(self, exc: BaseException) -> None:
        while True:
            try:
                cmd = self._inbox.get_nowait()
            except queue.Empty:
                return
            if cmd[0] == "add":
                _post(cmd[5], cmd[6], None, exc)
