"""merged_adapters: merged prediction equals unmerged prediction, the base weights come back bit
for bit (also after an exception and in bf16), training after a merged prediction is unchanged,
and adapters that cannot be merged deterministically are refused."""

from __future__ import annotations

import copy

import geoopt
import pytest
import torch
from _helpers import tiny_decoder
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bayeshead.adapters import (
    LoRAConfig,
    LoRALinear,
    PoLARConfig,
    PoLARLinear,
    adapter_modules,
    inject_adapters,
    merge_adapters,
)
from bayeshead.adapters.merged import NotMergeableError, is_merged, merge_blockers, merged_adapters
from bayeshead.errors import UserInputError

VOCAB = 96
CONFIGS = {"lora": LoRAConfig, "polar": PoLARConfig}


def tiny_bert():
    """A MiniLM-shaped BERT encoder (random weights, 2 layers, width 32)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )
    return BertModel(config).eval()


@torch.no_grad()
def perturb(model: nn.Module, scale: float = 0.3) -> None:
    """Move every adapter away from ΔW = 0 (B = 0 for LoRA and Θ = 0 for PoLAR at init)."""
    for adapter in adapter_modules(model).values():
        if isinstance(adapter, LoRALinear):
            adapter.lora_B.normal_(0.0, scale)
        else:
            adapter.theta.normal_(0.0, scale)


def build(arch: str, kind: str, targets="all-linear", dtype=torch.float32, **cfg):
    model = tiny_bert() if arch == "bert" else tiny_decoder(arch, VOCAB)
    model = model.to(dtype)
    torch.manual_seed(1)
    inject_adapters(model, CONFIGS[kind](rank=4, target_modules=targets, **cfg))
    perturb(model)
    return model.eval()


def output(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"changed by the merged prediction: {changed[:5]}"


IDS = torch.randint(0, VOCAB, (3, 11), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["lora", "polar"])
@pytest.mark.parametrize("arch", ["llama", "bert", "gpt2"])
def test_merged_prediction_equals_unmerged_and_weights_come_back(arch, kind):
    model = build(arch, kind)
    before = snapshot(model)
    with torch.no_grad():
        reference = output(model, IDS)
        with merged_adapters(model) as same:
            assert same is model and is_merged(model)
            merged = output(model, IDS)
            changed = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
            assert changed == len(adapter_modules(model))  # one base weight per adapter, nothing else
    assert not is_merged(model)
    torch.testing.assert_close(merged, reference, atol=1e-5, rtol=1e-5)
    assert_bit_identical(model, before)


def test_naive_unmerge_is_not_bit_exact_so_the_restore_test_has_teeth():
    model = build("llama", "lora")
    before = snapshot(model)
    merge_adapters(model)
    for adapter in adapter_modules(model).values():
        adapter.unmerge()
    diffs = [k for k in before if not torch.equal(before[k], model.state_dict()[k])]
    assert diffs, "W + ΔW − ΔW happened to equal W everywhere; enlarge the perturbation"


def test_weights_are_restored_when_the_body_raises():
    model = build("llama", "polar")
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), merged_adapters(model):
        assert is_merged(model)
        raise RuntimeError("boom")
    assert not any(a.merged for a in adapter_modules(model).values())
    assert_bit_identical(model, before)


def test_already_merged_adapters_are_left_alone_and_contexts_nest():
    model = build("llama", "lora")
    unmerged = snapshot(model)
    merge_adapters(model)
    merged_state = snapshot(model)
    with merged_adapters(model):
        assert_bit_identical(model, merged_state)
    assert is_merged(model)
    assert_bit_identical(model, merged_state)

    fresh = build("llama", "lora")
    with merged_adapters(fresh):
        inner_state = snapshot(fresh)
        with merged_adapters(fresh):  # a no-op: everything is merged already
            assert_bit_identical(fresh, inner_state)
        assert is_merged(fresh)
    assert_bit_identical(fresh, unmerged)


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (4, 9), generator=gen)
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    model.eval()


@pytest.mark.parametrize("kind", ["lora", "polar"])
def test_training_after_a_merged_prediction_is_bit_identical(kind):
    a = build("llama", kind, targets=["q_proj", "v_proj", "down_proj"])
    b = copy.deepcopy(a)
    opts = [geoopt.optim.RiemannianAdam([p for p in m.parameters() if p.requires_grad], lr=1e-2) for m in (a, b)]
    _train(a, opts[0], 2, seed=1)
    _train(b, opts[1], 2, seed=1)
    with torch.no_grad(), merged_adapters(a):
        output(a, IDS)
    _train(a, opts[0], 3, seed=2)
    _train(b, opts[1], 3, seed=2)
    assert_bit_identical(a, snapshot(b))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), build("llama", kind).parameters(), strict=True))


def test_bf16_base_weights_merge_in_fp32_and_restore_exactly():
    model = build("llama", "lora", dtype=torch.bfloat16)
    reference32 = copy.deepcopy(model).float()  # the same numbers, computed in fp32
    before = snapshot(model)
    with torch.no_grad():
        exact = output(reference32, IDS)
        unmerged = output(model, IDS).float()
        with merged_adapters(model):
            for adapter in adapter_modules(model).values():
                w0 = before[f"{_name_of(model, adapter)}.base_layer.weight"]
                expected = (w0.float() + adapter.delta_weight()).to(torch.bfloat16)  # one rounding
                assert torch.equal(adapter.base_layer.weight, expected)
            merged = output(model, IDS).float()
    assert_bit_identical(model, before)
    # Documented tolerance: merging adds one bf16 rounding per weight (≤ 2⁻⁹ relative); the
    # merged prediction is as close to the fp32 computation as the unmerged bf16 one, within 2×.
    scale = exact.abs().max()
    err_merged = (merged - exact).abs().max() / scale
    err_unmerged = (unmerged - exact).abs().max() / scale
    assert err_merged < 0.1 and err_unmerged < 0.1  # measured: 0.047 and 0.040 of the largest logit
    assert err_merged <= 2.0 * err_unmerged + 1e-3


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def test_sampling_adapters_are_refused_before_anything_changes():
    model = build("llama", "lora", targets=["q_proj"])
    first = next(iter(adapter_modules(model)))
    model.get_submodule(first).sampling = True
    before = snapshot(model)
    with pytest.raises(NotMergeableError, match=r"samples its weights \(sampling=True\)") as info:
        with merged_adapters(model):
            pass
    assert first in str(info.value) and isinstance(info.value, UserInputError)
    assert_bit_identical(model, before)
    assert not is_merged(model)
    model.get_submodule(first).sampling = False
    with merged_adapters(model):
        assert is_merged(model)


def test_active_dropout_is_refused_in_training_mode_only():
    model = build("llama", "lora", targets=["q_proj"], dropout=0.1)
    model.train()
    with pytest.raises(NotMergeableError, match=r"dropout p=0.1.*model.eval\(\)"):
        with merged_adapters(model):
            pass
    model.eval()
    assert merge_blockers(model) == {}
    with merged_adapters(model):
        assert is_merged(model)


def test_tied_output_head_is_refused():
    model = tiny_decoder("gpt2", VOCAB)  # lm_head.weight is the token embedding
    inject_adapters(model, LoRAConfig(rank=2, target_modules="all-linear", include_output_head=True))
    blockers = merge_blockers(model)
    assert list(blockers) == ["lm_head"] and "transformer.wte.weight" in blockers["lm_head"]
    with pytest.raises(NotMergeableError, match="tied weights"):
        with merged_adapters(model):
            pass


def test_is_merged_needs_every_adapter_merged():
    assert not is_merged(nn.Linear(3, 3))
    model = build("llama", "lora", targets=["q_proj", "v_proj"])
    assert not is_merged(model)
    next(iter(adapter_modules(model).values())).merge()
    assert not is_merged(model)
    merge_adapters(model)
    assert is_merged(model)


def test_backup_device_is_honoured():
    model = build("llama", "polar", targets=["q_proj"])
    before = snapshot(model)
    with merged_adapters(model, backup_device="cpu"):
        pass
    assert_bit_identical(model, before)


class _Conv1D(nn.Module):
    """The ``transformers`` Conv1D layout: weight (in, out), y = x·W + b."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.randn(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


_Conv1D.__name__ = "Conv1D"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 12), m=st.integers(2, 12), data=st.data(),
    kind=st.sampled_from(["lora", "polar"]), conv=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16),
)
def test_single_layer_property(n, m, data, kind, conv, dtype, seed):
    torch.manual_seed(seed)
    rank = data.draw(st.integers(1, min(n, m)))
    base = (_Conv1D(m, n) if conv else nn.Linear(n, m)).to(dtype)
    cls = LoRALinear if kind == "lora" else PoLARLinear
    adapter = cls(base, CONFIGS[kind](rank=rank, alpha=2.0 * rank))
    holder = nn.Sequential(adapter)
    perturb(holder, scale=1.0)
    x = torch.randn(5, n, dtype=dtype)
    w0 = base.weight.detach().clone()
    with torch.no_grad():
        reference = holder(x)
        with merged_adapters(holder):
            delta = adapter.delta_weight()
            torch.testing.assert_close(base.weight, w0 + (delta.T if conv else delta), atol=0, rtol=0)
            merged = holder(x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(merged, reference, atol=tol, rtol=tol)
    assert torch.equal(base.weight, w0) and not adapter.merged


def test_bayesian_lora_merges_its_mean_and_is_refused_while_sampling():
    from bayeshead.adapters import bayesianize_lora, lora_sampling

    model = build("llama", "lora", targets=["q_proj", "v_proj"])
    bayesianize_lora(model, generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    with torch.no_grad():
        mean_path = output(model, IDS)
        with lora_sampling(model, True):
            assert set(merge_blockers(model)) == set(adapter_modules(model))
            with pytest.raises(NotMergeableError, match="sampling=True"), merged_adapters(model):
                pass
        with merged_adapters(model):
            merged = output(model, IDS)
    torch.testing.assert_close(merged, mean_path, atol=1e-5, rtol=1e-5)
    assert_bit_identical(model, before)
