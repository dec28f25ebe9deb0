"""Shared test helpers (not collected: the name starts with an underscore)."""

from __future__ import annotations

import torch

TEXTS = [
    "The cat sat on the mat.",
    "A cat was sitting on the mat.",
    "Quarterly revenue grew by twelve percent in the third quarter of the fiscal year.",
    "Hi",
]


def tiny_decoder(kind: str, vocab_size: int, seed: int = 0):
    """A randomly initialised 2-layer Llama / Qwen2 / GPT-2 causal LM."""
    from transformers import (
        AutoModelForCausalLM,
        GPT2Config,
        LlamaConfig,
        Qwen2Config,
    )

    torch.manual_seed(seed)
    if kind == "llama":
        config = LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=128,
        )
    elif kind == "qwen2":
        config = Qwen2Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=128,
        )
    elif kind == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=vocab_size, n_positions=128)
    else:
        raise ValueError(kind)
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    return model
