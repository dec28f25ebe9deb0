"""Adapter weights saved as safetensors + optimizer state_dict, resumed, reach the same
parameters as an uninterrupted run (PoLAR with "riemannian_adam" and "landing", LoRA + "adamw")."""

from __future__ import annotations

import copy

import pytest
import torch
from _helpers import tiny_decoder
from safetensors.torch import load_file, save_file

from bayeshead import OPTIMIZERS
from bayeshead.adapters import (
    LoRAConfig,
    PoLARConfig,
    adapter_geometry,
    adapter_state_dict,
    inject_adapters,
    load_adapter_state_dict,
)
from bayeshead.manifolds import group_by_geometry, orthogonality_error


def build(adapter_cfg, opt_kind):
    model = tiny_decoder("llama", vocab_size=128, seed=0)
    torch.manual_seed(5)
    inject_adapters(model, adapter_cfg)
    model.train()
    groups = group_by_geometry(model.named_parameters(), adapter_geometry(model))
    cfg_cls = OPTIMIZERS.config_class(opt_kind)
    optimizer = OPTIMIZERS.create(opt_kind, groups, cfg_cls(lr=1e-2, weight_decay=0.01))
    return model, optimizer


def train(model, optimizer, steps, start):
    for step in range(start, start + steps):
        ids = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()


@pytest.mark.parametrize("adapter_cfg, opt_kind", [
    (PoLARConfig(rank=4, target_modules=["q_proj", "v_proj"]), "riemannian_adam"),
    (PoLARConfig(rank=4, target_modules=["q_proj", "v_proj"]), "landing"),
    (LoRAConfig(rank=4, target_modules=["q_proj", "v_proj"]), "adamw"),
])
def test_resume_matches_uninterrupted(tmp_path, adapter_cfg, opt_kind):
    model, optimizer = build(adapter_cfg, opt_kind)
    train(model, optimizer, 6, 0)
    expected = {k: v.clone() for k, v in adapter_state_dict(model).items()}

    model1, opt1 = build(adapter_cfg, opt_kind)
    train(model1, opt1, 3, 0)
    save_file({k: v.contiguous() for k, v in adapter_state_dict(model1).items()}, str(tmp_path / "adapter.safetensors"))
    opt_state = copy.deepcopy(opt1.state_dict())  # in memory: no pickle file
    del model1, opt1

    model2, opt2 = build(adapter_cfg, opt_kind)
    load_adapter_state_dict(model2, load_file(str(tmp_path / "adapter.safetensors")))
    opt2.load_state_dict(opt_state)
    train(model2, opt2, 3, 3)
    got = adapter_state_dict(model2)
    assert set(got) == set(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    if opt_kind == "riemannian_adam":
        assert all(orthogonality_error(v) < 1e-5 for k, v in got.items() if k.endswith((".U", ".V")))
    moved = [k for k in expected if k.endswith(("theta", "lora_B"))]
    assert all(expected[k].abs().sum() > 0 for k in moved)  # training did something
