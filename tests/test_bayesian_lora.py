"""BayesianLoRALinear (BLoB's adapter): the closed-form KL against torch.distributions, flipout
moments against the closed form, exact equality with LoRA when not sampling, RNG behaviour,
from_lora / bayesianize_lora on a tiny Llama, state-dict round trips, merge/sampling rules."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import tiny_decoder
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.distributions import Normal, kl_divergence
from transformers.pytorch_utils import Conv1D

from bayeshead.adapters import (
    BayesianLoRALinear,
    LoRAConfig,
    LoRALinear,
    PoLARConfig,
    adapter_geometry,
    adapter_modules,
    adapter_state_dict,
    bayesian_lora_kl,
    bayesian_lora_modules,
    bayesianize_lora,
    inject_adapters,
    load_adapter_state_dict,
    lora_sampling,
    merge_adapters,
    unload_adapters,
)
from bayeshead.manifolds import group_by_geometry


def make_base(kind: str, n: int, m: int, dtype=torch.float64) -> nn.Module:
    layer = nn.Linear(n, m) if kind == "linear" else Conv1D(m, n)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    return layer.to(dtype)


def randomize(module: BayesianLoRALinear, rho_scale: float = 0.3) -> None:
    with torch.no_grad():
        module.lora_A.normal_()
        module.lora_B.normal_()
        module.lora_A_rho.copy_(rho_scale * (0.2 + torch.rand_like(module.lora_A_rho)))


def closed_form_variance(module: BayesianLoRALinear, x: torch.Tensor) -> torch.Tensor:
    """Var[out_j] = scale² Σ_k B_jk² Σ_i x_i² σ_ki² for one row x (n,)."""
    sigma = module.std().detach().double()
    b = module.lora_B.detach().double()
    per_rank = (sigma**2) @ (x.double() ** 2)  # (r,)
    return module.scaling**2 * (b**2) @ per_rank


# -- construction ---------------------------------------------------------------------------
def test_init_rho_range_positive_std_and_same_A_as_lora():
    base = make_base("linear", 7, 5)
    torch.manual_seed(3)
    lora = LoRALinear(base, LoRAConfig(rank=4))
    torch.manual_seed(3)
    blob = BayesianLoRALinear(base, LoRAConfig(rank=4), init_eps=0.05)
    assert torch.equal(blob.lora_A, lora.lora_A)  # M drawn exactly as LoRA's A
    assert torch.count_nonzero(blob.lora_B) == 0
    rho = blob.lora_A_rho.detach()
    assert rho.shape == blob.lora_A.shape and rho.dtype == blob.lora_A.dtype
    assert rho.min() >= 0.05 / math.sqrt(2) and rho.max() <= 0.05
    assert (blob.std() > 0).all()
    torch.testing.assert_close(blob.std(), rho**2, rtol=0, atol=0)
    assert blob.sampling is False and blob.generator is None
    assert blob.parameter_geometry() == {"lora_A": "euclidean", "lora_B": "euclidean", "lora_A_rho": "euclidean"}
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = BayesianLoRALinear(base, LoRAConfig(rank=4), generator=g1)
    b = BayesianLoRALinear(base, LoRAConfig(rank=4), generator=g2)
    assert torch.equal(a.lora_A, b.lora_A) and torch.equal(a.lora_A_rho, b.lora_A_rho)
    with pytest.raises(ValueError, match="prior_std"):
        BayesianLoRALinear(base, prior_std=0.0)
    with pytest.raises(ValueError, match="init_eps"):
        BayesianLoRALinear(base, init_eps=-1.0)


def test_std_nonnegative_when_rho_crosses_zero():
    torch.manual_seed(0)
    blob = BayesianLoRALinear(make_base("linear", 6, 4), LoRAConfig(rank=2), init_eps=0.05)
    randomize(blob)
    opt = torch.optim.SGD([blob.lora_A_rho], lr=1.0)
    for _ in range(3):  # push ρ through zero: the loss gradient is +1 on every ρ
        opt.zero_grad()
        blob.lora_A_rho.sum().backward()
        opt.step()
    assert (blob.lora_A_rho < 0).any()
    assert (blob.std() >= 0).all()
    torch.testing.assert_close(blob.std(), blob.lora_A_rho**2)
    blob.sampling = True
    assert torch.isfinite(blob(torch.randn(3, 6, dtype=torch.float64))).all()


# -- KL -----------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    r=st.integers(1, 5), n=st.integers(1, 9), m=st.integers(5, 9),
    beta=st.floats(0.01, 5.0), mean_scale=st.floats(0.0, 3.0), rho_scale=st.floats(0.05, 2.0),
    seed=st.integers(0, 9999), dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_kl_matches_torch_distributions(r, n, m, beta, mean_scale, rho_scale, seed, dtype):
    r = min(r, n)
    torch.manual_seed(seed)
    blob = BayesianLoRALinear(make_base("linear", n, m, dtype), LoRAConfig(rank=r), prior_std=beta)
    with torch.no_grad():
        blob.lora_A.copy_(mean_scale * torch.randn_like(blob.lora_A))
        blob.lora_A_rho.copy_(rho_scale * (0.1 + torch.rand_like(blob.lora_A_rho)) * torch.sign(torch.randn_like(blob.lora_A_rho)))
    kl = blob.kl_divergence()
    assert kl.dtype == torch.float64 and kl.dim() == 0
    mean = blob.lora_A.detach().double()
    sigma = blob.lora_A_rho.detach().double() ** 2
    expected = kl_divergence(Normal(mean, sigma), Normal(torch.zeros_like(mean), torch.full_like(mean, beta))).sum()
    torch.testing.assert_close(kl, expected, rtol=1e-10, atol=1e-10)
    kl.backward()
    assert blob.lora_A.grad is not None and blob.lora_A_rho.grad is not None
    assert blob.lora_B.grad is None


def test_kl_gradcheck_reference_eps_and_model_sum():
    torch.manual_seed(1)
    blob = BayesianLoRALinear(make_base("linear", 5, 4), LoRAConfig(rank=3), prior_std=0.3)
    randomize(blob)

    def kl_of(mean, rho):
        with torch.no_grad():
            blob.lora_A.copy_(mean)
            blob.lora_A_rho.copy_(rho)
        return blob.kl_divergence()

    # gradient formula: ∂KL/∂M = M/β², ∂KL/∂ρ = 2ρ(σ/β² − 1/σ)
    blob.zero_grad()
    blob.kl_divergence().backward()
    mean, rho = blob.lora_A.detach(), blob.lora_A_rho.detach()
    sigma = rho**2
    torch.testing.assert_close(blob.lora_A.grad, mean / 0.3**2)
    torch.testing.assert_close(blob.lora_A_rho.grad, 2 * rho * (sigma / 0.3**2 - 1 / sigma))
    # finite differences on the float64 function
    m0, r0 = mean.clone(), rho.clone()
    h = 1e-6
    e = torch.zeros_like(m0)
    e[0, 0] = h
    fd = (kl_of(m0 + e, r0) - kl_of(m0 - e, r0)) / (2 * h)
    torch.testing.assert_close(fd, (m0 / 0.09)[0, 0].to(fd.dtype), rtol=1e-6, atol=1e-6)
    kl_of(m0, r0)
    # the reference's stabilised form
    eps = 1e-6
    s64 = sigma.double()
    ref = (math.log(0.3 + eps) - torch.log(s64 + eps) + (s64**2 + mean.double() ** 2) / (2 * 0.09 + eps) - 0.5).sum()
    torch.testing.assert_close(blob.kl_divergence(eps=eps), ref, rtol=1e-12, atol=1e-12)
    # σ = 0 gives +inf (exact form), finite with eps
    with torch.no_grad():
        blob.lora_A_rho[0, 0] = 0.0
    assert math.isinf(float(blob.kl_divergence().detach()))
    assert math.isfinite(float(blob.kl_divergence(eps=1e-6).detach()))


# -- forward: mean path ---------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["linear", "conv1d"]), n=st.integers(1, 10), m=st.integers(1, 10),
    alpha=st.floats(0.5, 32.0), seed=st.integers(0, 9999),
)
def test_not_sampling_equals_lora_exactly(kind, n, m, alpha, seed):
    r = min(n, m, 3)
    torch.manual_seed(seed)
    base = make_base(kind, n, m, torch.float32)
    lora = LoRALinear(base, LoRAConfig(rank=r, alpha=alpha))
    with torch.no_grad():
        lora.lora_B.normal_()
    blob = BayesianLoRALinear.from_lora(lora)
    assert blob.base_layer is lora.base_layer
    x = torch.randn(2, 3, n)
    torch.testing.assert_close(blob(x), lora(x), rtol=0, atol=0)
    torch.testing.assert_close(blob.delta_weight(), lora.delta_weight(), rtol=0, atol=0)
    # sampling with σ = 0 adds exactly nothing
    blob.set_std(torch.zeros(()), trainable=False)
    blob.sampling = True
    torch.testing.assert_close(blob(x), lora(x), rtol=0, atol=0)


# -- forward: flipout moments ------------------------------------------------------------------
@settings(max_examples=8, deadline=None)
@given(
    kind=st.sampled_from(["linear", "conv1d"]), n=st.integers(1, 8), m=st.integers(1, 6),
    r=st.integers(1, 4), seed=st.integers(0, 9999),
)
def test_flipout_mean_and_variance_match_closed_form(kind, n, m, r, seed):
    """K passes of R identical rows. Rows of one pass are uncorrelated (independent signs) and
    passes independent, so Var[mean of all R·K rows] = var/(R·K) exactly (closed-form SE). Per pass,
    v_k = mean over rows of (y − μ)² has E[v_k] = var; the v_k are i.i.d. over passes, so their
    mean is checked against var with the batch-means standard error."""
    r = min(r, n, m)
    torch.manual_seed(seed)
    blob = BayesianLoRALinear(make_base(kind, n, m), LoRAConfig(rank=r, alpha=2.0 * r))
    randomize(blob)
    x = torch.randn(n, dtype=torch.float64)
    reps, passes = 64, 100
    with torch.no_grad():
        mean_out = blob(x)
        var = closed_form_variance(blob, x)
        blob.sampling = True
        draws = torch.stack([blob(x.expand(reps, n)) for _ in range(passes)])  # (K, R, m)
    assert (var > 0).all()
    se_mean = (var / (reps * passes)).sqrt()
    assert ((draws.mean((0, 1)) - mean_out).abs() <= 5 * se_mean).all()
    v = (draws - mean_out).pow(2).mean(1)  # (K, m)
    se_var = v.std(0) / math.sqrt(passes)
    assert ((v.mean(0) - var).abs() <= 5 * se_var).all()
    # the batch-means SE is not inflated beyond fully dependent rows (Var v_k ≤ 2·var²)
    assert (se_var <= 3 * var * math.sqrt(2.0 / passes)).all()


def test_flipout_single_row_is_gaussian_with_closed_form_variance():
    """One row per forward pass: exact N(μ, diag var) draws, so the sample variance has
    SE = var·√(2/(N−1)) and the standardized fourth moment is 3."""
    torch.manual_seed(7)
    blob = BayesianLoRALinear(make_base("linear", 6, 4), LoRAConfig(rank=3, alpha=6.0))
    randomize(blob)
    x = torch.randn(6, dtype=torch.float64)
    n_draws = 2000
    with torch.no_grad():
        mean_out = blob(x)
        var = closed_form_variance(blob, x)
        blob.sampling = True
        single = torch.stack([blob(x) for _ in range(n_draws)])  # (N, m)
    assert ((single.mean(0) - mean_out).abs() <= 5 * (var / n_draws).sqrt()).all()
    emp = single.var(0)
    assert ((emp - var).abs() <= 5 * var * math.sqrt(2.0 / (n_draws - 1))).all()
    kurtosis = ((single - mean_out) ** 4).mean(0) / var**2
    assert ((kurtosis - 3).abs() < 0.6).all()


def test_flipout_rows_of_one_pass_uncorrelated_and_rng():
    torch.manual_seed(0)
    blob = BayesianLoRALinear(make_base("linear", 5, 3), LoRAConfig(rank=2))
    randomize(blob)
    blob.sampling = True
    x = torch.randn(4, 5, dtype=torch.float64)
    with torch.no_grad():
        y1, y2 = blob(x), blob(x)
        assert not torch.equal(y1, y2)  # fresh noise each forward
        torch.manual_seed(11)
        a = blob(x)
        torch.manual_seed(11)
        b = blob(x)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(11)
            c = blob(x)
        torch.testing.assert_close(a, c, rtol=0, atol=0)
        # identical rows in one pass get different noise (per-row signs)
        same = blob(x[:1].expand(6, 5))
        assert not torch.allclose(same[0], same[1])
        # a dedicated generator: independent of the global RNG
        blob.generator = torch.Generator().manual_seed(4)
        torch.manual_seed(0)
        g1 = blob(x)
        blob.generator = torch.Generator().manual_seed(4)
        torch.manual_seed(1)
        g2 = blob(x)
        torch.testing.assert_close(g1, g2, rtol=0, atol=0)


def test_sampling_under_bf16_base_keeps_fp32_factors():
    torch.manual_seed(0)
    base = make_base("linear", 8, 6, torch.bfloat16)
    blob = BayesianLoRALinear(base, LoRAConfig(rank=2))
    assert {p.dtype for n, p in blob.named_parameters() if not n.startswith("base_layer.")} == {torch.float32}
    with torch.no_grad():
        blob.lora_B.normal_()
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    blob.sampling = True
    y = blob(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    loss = y.float().pow(2).sum() + blob.kl_divergence().float()
    loss.backward()
    assert blob.lora_A_rho.grad is not None and blob.lora_A_rho.grad.dtype == torch.float32


def test_gradients_reach_rho_only_when_sampling():
    torch.manual_seed(0)
    blob = BayesianLoRALinear(make_base("linear", 5, 4), LoRAConfig(rank=2))
    randomize(blob)
    x = torch.randn(3, 5, dtype=torch.float64)
    blob(x).sum().backward()
    assert blob.lora_A_rho.grad is None
    blob.sampling = True
    blob(x).pow(2).sum().backward()
    assert blob.lora_A_rho.grad is not None and blob.lora_A_rho.grad.abs().sum() > 0


# -- merge, set_std -----------------------------------------------------------------------------
def test_merge_refused_while_sampling_and_merges_mean_otherwise():
    torch.manual_seed(0)
    base = make_base("linear", 5, 4)
    blob = BayesianLoRALinear(base, LoRAConfig(rank=2))
    randomize(blob)
    x = torch.randn(2, 5, dtype=torch.float64)
    expected = blob(x).detach()
    blob.sampling = True
    with pytest.raises(RuntimeError, match="sampling"):
        blob.merge()
    blob.sampling = False
    blob.merge()
    torch.testing.assert_close(blob(x), expected, rtol=1e-12, atol=1e-12)
    blob.sampling = True
    with pytest.raises(RuntimeError, match="unmerge"):
        blob(x)
    blob.sampling = False
    blob.unmerge()
    torch.testing.assert_close(blob(x), expected, rtol=1e-12, atol=1e-12)


def test_set_std():
    blob = BayesianLoRALinear(make_base("linear", 6, 4), LoRAConfig(rank=3))
    sigma = torch.rand(3, 6, dtype=torch.float64) + 0.01
    blob.set_std(sigma, trainable=False)
    torch.testing.assert_close(blob.std(), sigma, rtol=1e-12, atol=1e-15)
    assert not blob.lora_A_rho.requires_grad
    names = [n for g in group_by_geometry(blob.named_parameters()) for n in g["names"]]
    assert "lora_A_rho" not in names and {"lora_A", "lora_B"} <= set(names)
    blob.set_std(torch.tensor([[0.1], [0.2], [0.3]]), trainable=True)  # broadcast per row
    torch.testing.assert_close(blob.std()[:, 4], torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    assert blob.lora_A_rho.requires_grad
    with pytest.raises(ValueError, match="broadcast"):
        blob.set_std(torch.ones(6, 3), trainable=False)
    with pytest.raises(ValueError, match=">= 0|≥ 0"):
        blob.set_std(-torch.ones(3, 6), trainable=False)
    with pytest.raises(ValueError, match="finite"):
        blob.set_std(torch.full((3, 6), float("inf")), trainable=False)


# -- model level ----------------------------------------------------------------------------------
def lora_llama(seed: int = 0, target=("q_proj", "v_proj")):
    model = tiny_decoder("llama", 50, seed=seed)
    inject_adapters(model, LoRAConfig(rank=2, target_modules=list(target)))
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for adapter in adapter_modules(model).values():
            adapter.lora_B.normal_(std=0.5)
    return model


def test_bayesianize_llama_keeps_outputs_and_state_roundtrip():
    model = lora_llama()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    before = model(ids).logits.detach()
    old = adapter_modules(model)
    names = bayesianize_lora(model, prior_std=0.15, init_eps=0.05, generator=torch.Generator().manual_seed(0))
    assert names == sorted(old) and len(names) == 4
    mods = bayesian_lora_modules(model)
    assert list(mods) == list(old)
    for name, mod in mods.items():
        assert mod.base_layer is old[name].base_layer
        assert torch.equal(mod.lora_A, old[name].lora_A) and torch.equal(mod.lora_B, old[name].lora_B)
        assert mod.prior_std == 0.15
    torch.testing.assert_close(model(ids).logits, before, rtol=0, atol=0)
    # sampling changes the logits and lora_sampling restores the flags (also on errors)
    with lora_sampling(model, True):
        torch.manual_seed(0)
        noisy = model(ids).logits.detach()
        assert all(m.sampling for m in mods.values())
    assert not any(m.sampling for m in mods.values())
    assert not torch.allclose(noisy, before)
    next(iter(mods.values())).sampling = True
    with pytest.raises(KeyError):
        with lora_sampling(model, False):
            assert not any(m.sampling for m in mods.values())
            raise KeyError("boom")
    assert [m.sampling for m in mods.values()] == [True, False, False, False]
    next(iter(mods.values())).sampling = False
    # KL sum, geometry, state dict with ρ
    total = bayesian_lora_kl(model)
    assert total.dtype == torch.float64
    torch.testing.assert_close(total, sum(m.kl_divergence() for m in mods.values()))
    geometry = adapter_geometry(model)
    assert all(geometry[f"{n}.lora_A_rho"] == "euclidean" for n in mods)
    state = adapter_state_dict(model)
    assert {k for k in state if k.endswith("lora_A_rho")} == {f"{n}.lora_A_rho" for n in mods}
    other = lora_llama()  # same base weights (seed 0), different adapter values after bayesianize
    bayesianize_lora(other)
    with torch.no_grad():
        for m in bayesian_lora_modules(other).values():
            m.lora_A_rho.mul_(3.0)
            m.lora_A.zero_()
    load_adapter_state_dict(other, state)
    for k, v in adapter_state_dict(other).items():
        assert torch.equal(v, state[k]), k
    torch.testing.assert_close(other(ids).logits, before, rtol=0, atol=0)
    with lora_sampling(other, True):
        torch.manual_seed(0)
        torch.testing.assert_close(other(ids).logits, noisy, rtol=0, atol=0)
    # a plain LoRA model does not accept the Bayesian state (ρ keys unexpected)
    with pytest.raises(ValueError, match="unexpected"):
        load_adapter_state_dict(lora_llama(), state)


def test_bayesianize_errors_and_merge():
    with pytest.raises(ValueError, match="no adapters"):
        bayesianize_lora(tiny_decoder("llama", 50))
    polar = tiny_decoder("llama", 50)
    inject_adapters(polar, PoLARConfig(rank=2, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="not LoRA"):
        bayesianize_lora(polar)
    merged = lora_llama()
    merge_adapters(merged)
    with pytest.raises(ValueError, match="merged"):
        bayesianize_lora(merged)
    assert not bayesian_lora_modules(merged)  # nothing replaced
    model = lora_llama()
    bayesianize_lora(model)
    with pytest.raises(ValueError, match="Bayesian already"):
        bayesianize_lora(model)
    for helper in (lambda m: bayesian_lora_kl(m), lambda m: lora_sampling(m, True).__enter__()):
        with pytest.raises(ValueError, match="bayesianize_lora"):
            helper(lora_llama())
    with pytest.raises(TypeError, match="LoRALinear"):
        BayesianLoRALinear.from_lora(adapter_modules(polar)["model.layers.0.self_attn.q_proj"])
    # merging the mean then unloading works when not sampling, and is refused while sampling
    ids = torch.randint(0, 50, (1, 5), generator=torch.Generator().manual_seed(0))
    expected = model(ids).logits.detach()
    with lora_sampling(model, True), pytest.raises(RuntimeError, match="sampling"):
        merge_adapters(model)
    unmerged = [m for m in bayesian_lora_modules(model).values() if not m.merged]
    assert unmerged  # the refused call merged nothing before failing on the first module
    plain = unload_adapters(model, merge=True)
    torch.testing.assert_close(plain(ids).logits, expected, rtol=1e-5, atol=1e-5)


def test_from_lora_keeps_dropout_flags_and_training_mode():
    base = make_base("linear", 6, 4, torch.float32)
    lora = LoRALinear(base, LoRAConfig(rank=2, alpha=4.0, dropout=0.25))
    lora.lora_A.requires_grad_(False)
    lora.eval()
    blob = BayesianLoRALinear.from_lora(lora, prior_std=0.3, init_eps=0.01)
    assert isinstance(blob.dropout, nn.Dropout) and blob.dropout.p == 0.25
    assert blob.scaling == lora.scaling and blob.rank == 2
    assert not blob.lora_A.requires_grad and blob.lora_B.requires_grad and blob.lora_A_rho.requires_grad
    assert not blob.training
    assert blob.lora_A_rho.min() >= 0.01 / math.sqrt(2) and blob.lora_A_rho.max() <= 0.01
