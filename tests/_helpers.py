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


SENTIMENT = (
    ["great film", "loved it", "awful plot", "boring and bad", "a masterpiece", "a waste of time",
     "truly wonderful acting", "terrible, avoid", "fun from start to end", "dull and slow",
     "brilliant score", "the worst sequel"],
    [1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0],
)


def tiny_model(tokenizer, overrides=(), num_outputs: int = 2, dtype=torch.float32, seed: int = 0):
    """A BayesianModel on a tiny random Llama (last-token pooling) built from config overrides."""
    from bayeshead.backbones.huggingface import HuggingFaceBackbone
    from bayeshead.config import load_config
    from bayeshead.model import BayesianModel

    config = load_config(overrides=["training.progress=false", *overrides])
    net = tiny_decoder("llama", tokenizer.vocab_size, seed=seed).to(dtype)
    backbone = HuggingFaceBackbone(net, tokenizer, pooling="last_token", max_length=32)
    torch.manual_seed(seed)
    model = BayesianModel.from_config(config, num_outputs=num_outputs, backbone=backbone)
    return model.to(dtype) if dtype == torch.float64 else model


def train_cli_args(tmp_path, *overrides: str) -> list[str]:
    """``bayeshead train`` arguments on a 24-row sentiment JSONL file (written to ``tmp_path``),
    a tiny MiniLM set-up and checkpoints every step; ``overrides`` are extra ``--set`` values."""
    import json

    texts, labels = SENTIMENT
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts * 2, labels * 2, strict=True)))
    sets = [
        "adapter.rank=2", "adapter.target_modules=[query]", "backbone.max_length=16", "training.batch_size=8",
        "training.checkpoint_every=1", "training.progress=false", *overrides,
    ]
    args = ["train", "--data", str(data), "--output", str(tmp_path / "model"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    for value in sets:
        args += ["--set", value]
    return args


def toy_questions(n: int = 12):
    """Multiple-choice data: n questions of 2 to 4 options each ("it is good" is always the right
    one), as option groups in a TextDataset with 4 option positions."""
    from bayeshead.data import TextDataset

    fillers = ["bad", "awful", "poor"]
    groups, answers = [], []
    for q in range(n):
        k = 2 + q % 3
        answer = (q * 7) % k
        groups.append(tuple(f"it is {'good' if j == answer else fillers[(q + j) % 3]}" for j in range(k)))
        answers.append(answer)
    return TextDataset(groups, answers, class_names=["A", "B", "C", "D"])
