"""Method-specific behaviour of the whole-model methods (the shared contract is tests/test_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import SENTIMENT, tiny_model

from bayeshead.adapters import LoRALinear, adapter_modules, bayesian_lora_modules
from bayeshead.data import TextDataset
from bayeshead.errors import UserInputError
from bayeshead.methods import build_method
from bayeshead.methods.blob import BLoB, kl_weight
from bayeshead.methods.ensemble import AdapterEnsemble
from bayeshead.methods.tfb import TFB

_LORA = ["adapter.kind=lora", "adapter.rank=2", "adapter.target_modules=[q_proj, v_proj]", "head.kind=deterministic",
         "training.batch_size=4", "optimizer.lr=0.05"]
_TEXTS = ["great", "awful", "fine film"]


def _method(tokenizer, cls, overrides):
    model = tiny_model(tokenizer, [*_LORA, *overrides])
    method = cls(model)
    method.prepare_model()
    return method


# ----- ensemble -----

def test_ensemble_members_differ_share_the_backbone_and_mix(offline_tokenizer):
    method = _method(offline_tokenizer, AdapterEnsemble, ["method.kind=ensemble", "method.members=3", "training.max_steps=2"])
    base = method.model.backbone.model.model.layers[0].self_attn.q_proj.base_layer.weight
    pointer, before = base.data_ptr(), base.detach().clone()
    rows = method.fit(TextDataset(*SENTIMENT))
    assert sorted({row["member"] for row in rows}) == [0.0, 1.0, 2.0] and len(rows) == 6
    assert base.data_ptr() == pointer and torch.equal(base, before)  # one frozen copy, untouched
    a, b = method._states[0], method._states[1]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    heads = method.heads()
    assert len(heads) == 3 and not torch.equal(heads[0].linear.weight, heads[1].linear.weight)
    assert method.trainable_parameters() == 3 * sum(t.numel() for t in a.values()) + sum(
        p.numel() for h in heads for p in h.parameters()
    )
    pred = method.predict(_TEXTS)
    assert pred.samples.shape == (3, 3, 2)
    torch.testing.assert_close(pred.probs, pred.samples.mean(0))
    with method.member(1) as view:  # member 1 alone is its own model over the shared backbone
        torch.testing.assert_close(view.predict(_TEXTS).probs, pred.samples[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(UserInputError, match="adapter"):
        build_method(tiny_model(offline_tokenizer, ["method.kind=ensemble"]).config, num_outputs=2)


# ----- BLoB -----

def test_kl_weight_schedules():
    m = 7
    assert [kl_weight(i, m, False) for i in range(m)] == [1 / m] * m
    pis = [kl_weight(i, m, True) for i in range(m)]
    assert all(b == pytest.approx(2 * a) for a, b in zip(pis, pis[1:], strict=False))  # doubles per batch
    assert pis[0] == pytest.approx(2 / (2 ** (m + 1) - 1))
    assert sum(pis) == pytest.approx((2 ** (m + 1) - 2) / (2 ** (m + 1) - 1))  # the reference's π_i sum
    assert kl_weight(2000, 2001, True) == pytest.approx(0.5, rel=1e-9)  # no overflow for long epochs
    with pytest.raises(ValueError):
        kl_weight(3, 3, True)


def test_blob_mean_model_equals_plain_lora_and_samples_differ(offline_tokenizer):
    method = _method(offline_tokenizer, BLoB, ["method.kind=blob"])
    plain = tiny_model(offline_tokenizer, _LORA)
    torch.manual_seed(1)
    with torch.no_grad():  # give B (zero at init) values, the same in both models
        for name, module in bayesian_lora_modules(method.model.backbone.model).items():
            module.lora_B.normal_()
            twin = adapter_modules(plain.backbone.model)[name]
            assert type(twin) is LoRALinear
            twin.lora_A.copy_(module.lora_A)
            twin.lora_B.copy_(module.lora_B)
    mean = method.predict(_TEXTS, n_samples=0)
    torch.testing.assert_close(mean.probs, plain.predict(_TEXTS).probs, rtol=0, atol=0)
    assert mean.samples is None
    sampled = method.predict(_TEXTS, generator=torch.Generator().manual_seed(0))
    assert sampled.samples.shape == (10, 3, 2) and sampled.samples.var(0).gt(0).any()
    again = method.predict(_TEXTS, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.probs, sampled.probs, rtol=0, atol=0)
    assert all(not m.sampling for m in bayesian_lora_modules(method.model.backbone.model).values())


def test_blob_joint_training_adds_the_kl_over_n(offline_tokenizer):
    from bayeshead.training.hooks import StepInfo

    method = _method(offline_tokenizer, BLoB, ["method.kind=blob", "training.max_steps=2"])
    data = TextDataset(*SENTIMENT)
    rows = method.fit(data)
    assert all("kl_adapters" in row and math.isfinite(row["kl_adapters"]) for row in rows)
    n, m = len(data), 3  # 12 examples in batches of 4
    kl = float(method.kl().detach())
    terms = method.training_hooks().regularizer(StepInfo(0, 6, 1, m, 1.0))
    assert float(terms["kl_adapters"]) == pytest.approx(kl / n, rel=1e-12)  # π_i·M/N = 1/N
    reweighted = _method(offline_tokenizer, BLoB, ["method.kind=blob", "method.kl_reweighting=true"])
    reweighted.model.head.set_n_train(n)  # fit sets it from the data
    expected = float(reweighted.kl().detach()) * kl_weight(1, m, True) * m / n
    got = reweighted.training_hooks().regularizer(StepInfo(0, 6, 1, m, 1.0))["kl_adapters"]
    assert float(got) == pytest.approx(expected, rel=1e-12)
    assert all((mod.std() > 0).all() for mod in bayesian_lora_modules(method.model.backbone.model).values())


def test_blob_reference_split_moves_rho_only_in_its_own_step(offline_tokenizer):
    method = _method(offline_tokenizer, BLoB, ["method.kind=blob", "method.optimizer=reference"])
    hooks = method.training_hooks()
    rho_ids = {id(m.lora_A_rho) for m in bayesian_lora_modules(method.model.backbone.model).values()}
    assert {id(p) for p in hooks.exclude} == rho_ids and hooks.after_step is not None
    from bayeshead.training import Trainer

    trainer = Trainer(method.model, hooks=hooks)
    in_optimizers = {id(p) for opt in trainer.optimizers.values() for g in opt.param_groups for p in g["params"]}
    assert not rho_ids & in_optimizers  # the configured optimizer never steps ρ
    before = [m.lora_A_rho.detach().clone() for m in bayesian_lora_modules(method.model.backbone.model).values()]
    trainer.fit(TextDataset(*SENTIMENT))
    after = [m.lora_A_rho for m in bayesian_lora_modules(method.model.backbone.model).values()]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # the SGD step moved it


def test_blob_refuses_polar(offline_tokenizer):
    config = tiny_model(offline_tokenizer, ["adapter.kind=polar", "method.kind=blob"]).config
    with pytest.raises(UserInputError, match="adapter.kind=lora"):
        build_method(config, num_outputs=2)


# ----- TFB -----

def test_tfb_beta_is_the_largest_feasible_value_on_a_grid(offline_tokenizer):
    method = _method(offline_tokenizer, TFB, ["method.kind=tfb", "training.max_steps=6", "method.iterations=8",
                                              "method.threshold=0.02", "method.beta_max=2.0", "method.search_samples=2"])
    data = TextDataset(*SENTIMENT)
    mean_before = method.predict(_TEXTS, n_samples=0).probs
    method.fit(data)
    found = method.posthoc["tfb_beta"]
    assert method.posthoc["tfb_relative_increase"] <= 0.02  # feasible
    torch.testing.assert_close(method.predict(_TEXTS, n_samples=0).probs.shape, mean_before.shape)
    # the same criterion on a grid: every grid value above the bisection's bracket is infeasible
    singular = {}
    from bayeshead.adapters.tfb import tfb_factors

    for name, module in bayesian_lora_modules(method.model.backbone.model).items():
        singular[name] = tfb_factors(module)[2]  # B' = U D already: its singular values are d again
    from bayeshead.evaluation import predict_dataset

    anchor = method._anchor_data(data)
    texts, labels = anchor.texts, anchor.labels
    nll0 = method.posthoc["tfb_anchor_nll0"]

    def increase(beta: float) -> float:
        method._set_beta(beta, singular)
        pred = predict_dataset(lambda t, generator: method.predict(t, n_samples=2, generator=generator), texts, 64, 0)
        return (float(pred.nll(labels).mean()) - nll0) / nll0

    resolution = (2.0 - 1e-3) / 2**8
    grid = [1e-3 + k * (2.0 - 1e-3) / 40 for k in range(41)]
    feasible = [b for b in grid if increase(b) <= 0.02]
    assert feasible, "no feasible beta on the grid"
    if found < 2.0:
        assert max(feasible) <= found + resolution + 1e-12
    assert increase(found) <= 0.02
    assert method.beta == pytest.approx(found) and math.isfinite(found)
