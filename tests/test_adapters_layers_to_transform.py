"""layers_to_transform / top_layers: the same modules as PEFT's LoraConfig adapts, the top-k
blocks, and clear errors for indices that cannot exist."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayeshead.adapters import LoRAConfig, PoLARConfig, inject_adapters
from bayeshead.adapters.inject import (
    layer_index,
    linear_module_names,
    num_blocks,
    output_head_names,
)


def tiny(kind: str, layers: int = 4) -> nn.Module:
    """A random 4-block Llama / GPT-2 causal LM or BERT encoder."""
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, GPT2Config, LlamaConfig

    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=64, max_position_embeddings=64,
        )
        return AutoModelForCausalLM.from_config(cfg)
    if kind == "gpt2":
        return AutoModelForCausalLM.from_config(GPT2Config(n_embd=32, n_layer=layers, n_head=4, vocab_size=64, n_positions=64))
    cfg = BertConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4, vocab_size=64,
        max_position_embeddings=64,
    )
    return AutoModel.from_config(cfg)


def peft_adapted(model: nn.Module, targets, layers) -> list[str]:
    """Names of the modules PEFT's LoraConfig(target_modules, layers_to_transform) adapts. PEFT
    refuses "all-linear" with layers_to_transform: it gets the linear layers' suffixes instead."""
    from peft import LoraConfig, get_peft_model

    if targets == "all-linear":
        heads = output_head_names(model)
        targets = sorted({n.rsplit(".", 1)[-1] for n in linear_module_names(model) if n not in heads})

    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=targets, layers_to_transform=layers))
    prefix = "base_model.model."
    return sorted(
        name[len(prefix):] for name, module in peft_model.named_modules() if hasattr(module, "lora_A")
    )


CASES = [
    ("llama", ["q_proj", "v_proj"], [0, 2]),
    ("llama", ["q_proj", "o_proj", "down_proj"], 3),
    ("llama", "all-linear", [1, 3]),
    ("gpt2", ["c_attn", "c_fc"], [2]),
    ("gpt2", "all-linear", [0, 3]),
    ("bert", ["query", "value", "dense"], [1, 2]),
]


@pytest.mark.parametrize(("kind", "targets", "layers"), CASES)
def test_same_modules_as_peft(kind, targets, layers):
    ours = inject_adapters(tiny(kind), LoRAConfig(rank=2, target_modules=targets, layers_to_transform=layers))
    assert ours == peft_adapted(tiny(kind), targets, layers)
    wanted = {layers} if isinstance(layers, int) else set(layers)
    assert ours and {layer_index(name) for name in ours} == wanted


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_top_layers_are_the_last_blocks(kind):
    model = tiny(kind)
    assert num_blocks(model) == 4
    targets = ["q_proj", "v_proj", "c_attn", "query", "value"]
    names = inject_adapters(model, PoLARConfig(rank=2, target_modules=targets, top_layers=1))
    assert {layer_index(n) for n in names} == {3}
    assert names == peft_adapted(tiny(kind), [t for t in targets if any(n.endswith(t) for n in names)], [3])
    two = inject_adapters(tiny(kind), LoRAConfig(rank=2, target_modules=targets, top_layers=2))
    assert two == inject_adapters(tiny(kind), LoRAConfig(rank=2, target_modules=targets, layers_to_transform=[2, 3]))
    every = inject_adapters(tiny(kind), LoRAConfig(rank=2, target_modules=targets, top_layers=4))
    assert every == inject_adapters(tiny(kind), LoRAConfig(rank=2, target_modules=targets))


def test_only_the_chosen_blocks_train_and_the_forward_runs():
    model = tiny("llama")
    inject_adapters(model, LoRAConfig(rank=2, top_layers=2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and {layer_index(n) for n in trainable} == {2, 3}
    assert all("lora_" in n for n in trainable)
    out = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    out.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_layer_index_reads_the_first_block_number():
    assert layer_index("model.layers.12.self_attn.q_proj") == 12
    assert layer_index("transformer.h.0.attn.c_attn") == 0
    assert layer_index("encoder.layer.5.attention.self.query") == 5
    assert layer_index("model.layers.1.mlp.experts.7.up_proj") == 1
    assert layer_index("lm_head") is None and layer_index("pooler.dense") is None


def test_config_refuses_what_no_model_allows():
    with pytest.raises(ValueError, match="both set; choose one"):
        LoRAConfig(layers_to_transform=[0], top_layers=1)
    with pytest.raises(ValueError, match=r"negative block indices \[-1\]"):
        LoRAConfig(layers_to_transform=[0, -1])
    with pytest.raises(ValueError, match="selects no block"):
        LoRAConfig(layers_to_transform=[])
    with pytest.raises(ValueError, match=r"top_layers must be >= 1, got 0; for k = 0 leave the adapter out"):
        LoRAConfig(top_layers=0)
    with pytest.raises(ValueError, match="regular expression"):
        LoRAConfig(target_modules=r".*q_proj", layers_to_transform=1)


def test_injection_refuses_indices_beyond_the_model():
    with pytest.raises(ValueError, match=r"block indices \[4, 7\] but LlamaForCausalLM has 4 blocks"):
        inject_adapters(tiny("llama"), LoRAConfig(layers_to_transform=[1, 4, 7]))
    with pytest.raises(ValueError, match="top_layers=5 but GPT2LMHeadModel has 4 blocks"):
        inject_adapters(tiny("gpt2"), LoRAConfig(target_modules=["c_attn"], top_layers=5))
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="has no module named like"):
        inject_adapters(model, LoRAConfig(target_modules="all-linear", top_layers=1))


def test_injection_checks_configs_built_without_validation():
    """model_construct skips pydantic: the injection itself still refuses bad options."""
    both = LoRAConfig.model_construct(**{**LoRAConfig().model_dump(), "layers_to_transform": [0], "top_layers": 1})
    with pytest.raises(ValueError, match="both set"):
        inject_adapters(tiny("llama"), both)
    negative = LoRAConfig.model_construct(**{**LoRAConfig().model_dump(), "layers_to_transform": -2})
    with pytest.raises(ValueError, match="negative block indices"):
        inject_adapters(tiny("llama"), negative)


def test_message_names_the_searched_blocks_when_nothing_matches():
    with pytest.raises(ValueError, match=r"Only blocks \[0\] were searched"):
        inject_adapters(tiny("llama"), LoRAConfig(target_modules=["c_attn"], layers_to_transform=0))
