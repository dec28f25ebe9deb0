"""LoRALinear / PoLARLinear around nn.Linear and GPT-2 Conv1D: the forward formula, ΔW = 0 at
init, merge ≡ unmerged, Conv1D layout, geometry tags, rank errors, bf16 backbones."""

from __future__ import annotations

import geoopt
import pytest
import torch
from _helpers import tiny_decoder
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers.pytorch_utils import Conv1D

from bayeshead.adapters import LoRAConfig, LoRALinear, PoLARConfig, PoLARLinear, inject_adapters
from bayeshead.manifolds import orthogonality_error


def make_base(kind: str, n: int, m: int, dtype=torch.float64) -> nn.Module:
    layer = nn.Linear(n, m) if kind == "linear" else Conv1D(m, n)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    return layer.to(dtype)


def perturb(adapter: nn.Module) -> None:
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if name in ("theta", "lora_B"):
                p.normal_()


def dense_weight(layer: nn.Module) -> torch.Tensor:
    return layer.weight.T if isinstance(layer, Conv1D) else layer.weight


@st.composite
def setups(draw):
    n, m = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    r = draw(st.integers(1, min(m, n)))
    return (
        draw(st.sampled_from(["linear", "conv1d"])),
        draw(st.sampled_from(["lora", "polar"])),
        n, m, r, draw(st.floats(0.5, 32.0)), draw(st.integers(0, 9999)),
    )


@settings(max_examples=40, deadline=None)
@given(setup=setups())
def test_forward_formula_merge_and_zero_init(setup):
    kind, adapter_kind, n, m, r, alpha, seed = setup
    torch.manual_seed(seed)
    base = make_base(kind, n, m)
    x = torch.randn(3, 2, n, dtype=torch.float64)
    reference = base(x).detach().clone()
    cls, cfg = (LoRALinear, LoRAConfig) if adapter_kind == "lora" else (PoLARLinear, PoLARConfig)
    adapter = cls(base, cfg(rank=r, alpha=alpha))
    # ΔW = 0 at init, output unchanged
    assert torch.count_nonzero(adapter.delta_weight()) == 0
    torch.testing.assert_close(adapter(x), reference, rtol=0, atol=0)
    perturb(adapter)
    if adapter_kind == "polar":
        u, v, theta = adapter.U, adapter.V, adapter.theta
        delta = (alpha / r) * u @ theta @ v.T
        assert orthogonality_error(u) < 1e-12 and orthogonality_error(v) < 1e-12
    else:
        delta = (alpha / r) * adapter.lora_B @ adapter.lora_A
    expected = reference + x @ delta.T
    torch.testing.assert_close(adapter(x), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(adapter.delta_weight(), delta, rtol=1e-12, atol=1e-12)
    w0 = dense_weight(base).detach().clone()
    adapter.merge()
    torch.testing.assert_close(dense_weight(base), w0 + delta, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(adapter(x), expected, rtol=1e-6, atol=1e-6)
    adapter.merge()  # idempotent
    torch.testing.assert_close(adapter(x), expected, rtol=1e-6, atol=1e-6)
    adapter.unmerge()
    torch.testing.assert_close(dense_weight(base), w0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(adapter(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls,cfg", [(LoRALinear, LoRAConfig), (PoLARLinear, PoLARConfig)])
def test_conv1d_agrees_with_equivalent_linear(cls, cfg):
    torch.manual_seed(0)
    conv = make_base("conv1d", 6, 5, torch.float32)
    linear = nn.Linear(6, 5)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(conv.bias)
    a_conv, a_lin = cls(conv, cfg(rank=3)), cls(linear, cfg(rank=3))
    perturb(a_conv)
    own = {k: v for k, v in a_conv.state_dict().items() if not k.startswith("base_layer.")}
    a_lin.load_state_dict(own, strict=False)
    x = torch.randn(4, 6)
    torch.testing.assert_close(a_conv(x), a_lin(x))
    assert a_conv.delta_weight().shape == (5, 6)
    a_conv.merge()
    torch.testing.assert_close(conv(x), a_lin(x), rtol=1e-5, atol=1e-6)


def test_factors_and_geometry():
    polar = PoLARLinear(nn.Linear(10, 7), PoLARConfig(rank=4))
    assert isinstance(polar.U, geoopt.ManifoldParameter) and isinstance(polar.V, geoopt.ManifoldParameter)
    assert isinstance(polar.U.manifold, geoopt.EuclideanStiefel)
    assert polar.U.shape == (7, 4) and polar.V.shape == (10, 4) and polar.theta.shape == (4, 4)
    assert torch.count_nonzero(polar.theta) == 0
    assert polar.parameter_geometry() == {"U": "stiefel", "V": "stiefel", "theta": "euclidean"}
    assert not polar.base_layer.weight.requires_grad
    lora = LoRALinear(nn.Linear(10, 7), LoRAConfig(rank=4))
    assert lora.lora_A.shape == (4, 10) and lora.lora_B.shape == (7, 4)
    assert torch.count_nonzero(lora.lora_B) == 0 and torch.count_nonzero(lora.lora_A) > 0
    bound = 1 / 10**0.5  # Kaiming-uniform with a = √5 on fan_in = n
    assert lora.lora_A.abs().max() <= bound
    assert lora.parameter_geometry() == {"lora_A": "euclidean", "lora_B": "euclidean"}
    assert lora.stable_rank() == 0.0 and polar.stable_rank() == 0.0


@pytest.mark.parametrize("cls,cfg", [(LoRALinear, LoRAConfig), (PoLARLinear, PoLARConfig)])
def test_rank_above_min_dim_is_a_clear_error(cls, cfg):
    with pytest.raises(ValueError, match=r"rank r=9 exceeds min\(out, in\).*use rank <= 5"):
        cls(nn.Linear(5, 12), cfg(rank=9))


def test_dropout_applies_to_adapter_input_only_in_training():
    torch.manual_seed(0)
    adapter = LoRALinear(nn.Linear(8, 8), LoRAConfig(rank=2, dropout=0.5))
    perturb(adapter)
    x = torch.randn(16, 8)
    adapter.eval()
    torch.testing.assert_close(adapter(x), adapter(x))
    adapter.train()
    assert not torch.allclose(adapter(x), adapter(x))


def test_bf16_llama_polar_forward_backward():
    model = tiny_decoder("llama", vocab_size=128).to(torch.bfloat16)
    inject_adapters(model, PoLARConfig(rank=4, target_modules=["q_proj", "v_proj"]))
    ids = torch.randint(0, 128, (2, 9))
    model.train()
    out = model(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())
    for name, p in trainable.items():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name
    assert torch.isfinite(out.logits.float()).all() and torch.isfinite(out.loss)
    # Θ = 0 blocks the gradient of U and V at init, but Θ receives one
    assert any(p.grad.abs().sum() > 0 for n, p in trainable.items() if n.endswith("theta"))
