"""TFB mathematics: B'A' = BA from the SVD of B, σ_ij = β/d_i (zero singular values → σ = 0),
the noise it induces on ΔW, and the bisection for the largest feasible β."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bayeshead.adapters import (
    BayesianLoRALinear,
    LoRAConfig,
    LoRALinear,
    PoLARConfig,
    PoLARLinear,
    tfb_factors,
    tfb_std,
)
from bayeshead.methods.bisection import largest_feasible


def make_lora(n: int, m: int, r: int, dtype=torch.float64, seed: int = 0, b_rank: int | None = None) -> LoRALinear:
    torch.manual_seed(seed)
    lora = LoRALinear(nn.Linear(n, m).to(dtype), LoRAConfig(rank=r, alpha=2.0 * r))
    with torch.no_grad():
        b = torch.randn(m, r, dtype=dtype)
        if b_rank is not None:  # B of lower rank: some singular values are zero
            b = torch.randn(m, b_rank, dtype=dtype) @ torch.randn(b_rank, r, dtype=dtype) if b_rank else b * 0
        lora.lora_B.copy_(b)
    return lora


# -- tfb_factors ---------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12), m=st.integers(1, 12), r=st.integers(1, 6), seed=st.integers(0, 9999),
    dtype=st.sampled_from([torch.float32, torch.float64]), low_rank=st.booleans(),
)
def test_factors_reproduce_BA(n, m, r, seed, dtype, low_rank):
    r = min(r, n, m)
    lora = make_lora(n, m, r, dtype, seed, b_rank=(r - 1 if low_rank else None))
    b_new, a_new, d = tfb_factors(lora)
    assert b_new.shape == (m, r) and a_new.shape == (r, n) and d.shape == (r,)
    assert b_new.dtype == dtype and a_new.dtype == dtype and d.dtype == dtype
    ba = (lora.lora_B @ lora.lora_A).detach()
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    scale = float(ba.abs().max()) + 1.0
    torch.testing.assert_close(b_new @ a_new, ba.detach(), rtol=tol, atol=tol * scale)
    assert (d >= 0).all() and (d[:-1] >= d[1:]).all()
    torch.testing.assert_close(d.double(), torch.linalg.svdvals(lora.lora_B.detach().double()).to(dtype).double())
    # columns of B' are orthogonal with norms d (B' = U·diag(d))
    gram = (b_new.double().T @ b_new.double())
    torch.testing.assert_close(gram, torch.diag(d.double() ** 2), rtol=1e-4, atol=1e-4 * (1 + float(d.max()) ** 2))
    # the adapter itself is untouched
    assert not lora.merged


def test_factors_deterministic_signs_and_refusals():
    lora = make_lora(7, 5, 3)
    b1, a1, _ = tfb_factors(lora)
    with torch.no_grad():  # B → −B, A → −A: same BA; the SVD of −B is U·diag(d)·(−V)ᵀ
        lora.lora_B.neg_()
        lora.lora_A.neg_()
    b2, a2, _ = tfb_factors(lora)
    torch.testing.assert_close(b1, b2)  # U's signs are fixed by a convention, not by LAPACK
    torch.testing.assert_close(a1, a2)
    idx = b1.abs().argmax(0)
    assert (b1[idx, torch.arange(3)] > 0).all()
    lora.merge()
    with pytest.raises(ValueError, match="merged"):
        tfb_factors(lora)
    polar = PoLARLinear(nn.Linear(5, 4), PoLARConfig(rank=2))
    with pytest.raises(TypeError, match="LoRALinear"):
        tfb_factors(polar)


# -- tfb_std --------------------------------------------------------------------------------------
def test_std_values_shape_and_zero_singular_values():
    d = torch.tensor([4.0, 2.0, 0.5], dtype=torch.float64)
    sigma = tfb_std(d, 0.1, 5)
    assert sigma.shape == (3, 5) and sigma.dtype == torch.float64
    torch.testing.assert_close(sigma, (0.1 / d)[:, None].expand(3, 5))
    assert sigma.is_contiguous()
    # exact and numerical zeros (below r·eps·max d) give σ = 0, never inf/NaN
    d0 = torch.tensor([3.0, 1e-20, 0.0], dtype=torch.float64)
    s0 = tfb_std(d0, 0.2, 4)
    assert torch.isfinite(s0).all()
    torch.testing.assert_close(s0[:, 0], torch.tensor([0.2 / 3.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.count_nonzero(tfb_std(torch.zeros(4), 0.2, 3)) == 0  # untrained B = 0
    assert torch.count_nonzero(tfb_std(d, 0.0, 3)) == 0  # β = 0: deterministic
    s_tol = tfb_std(torch.tensor([1.0, 1e-3]), 1.0, 2, rtol=1e-2)
    torch.testing.assert_close(s_tol[:, 0], torch.tensor([1.0, 0.0]))
    assert tfb_std(torch.tensor([2.0, 1.0], dtype=torch.float32), 1.0, 2).dtype == torch.float32
    for bad in (lambda: tfb_std(d, -1.0, 5), lambda: tfb_std(d, float("nan"), 5), lambda: tfb_std(d[None], 0.1, 5),
                lambda: tfb_std(-d, 0.1, 5), lambda: tfb_std(d, 0.1, 0)):
        with pytest.raises(ValueError):
            bad()


def test_tfb_into_bayesian_lora_noise_on_delta_w_is_beta_in_column_space():
    """With B' = U·diag(d), A' = VᵀA and σ_ij = β/d_i, the row-x noise of ΔW·x is
    scale·U·(β·E'·x)-distributed: Var[out_j] = scale²·β²·‖x‖²·Σ_i U_ji² on the rows with d_i > 0."""
    lora = make_lora(6, 5, 3, seed=1, b_rank=2)  # one zero singular value
    x = torch.randn(6, dtype=torch.float64)
    expected_mean = lora(x).detach()
    b_new, a_new, d = tfb_factors(lora)
    blob = BayesianLoRALinear.from_lora(lora)
    with torch.no_grad():
        blob.lora_B.copy_(b_new)
        blob.lora_A.copy_(a_new)
    beta = 0.3
    blob.set_std(tfb_std(d, beta, 6), trainable=False)
    assert torch.isfinite(blob.std()).all() and float(blob.std()[-1].abs().max()) == 0.0
    torch.testing.assert_close(blob(x), expected_mean, rtol=1e-12, atol=1e-12)  # mean unchanged
    sigma = blob.std().detach()
    var = blob.scaling**2 * (b_new**2) @ ((sigma**2) @ (x**2))
    u = b_new[:, :2] / d[:2]
    var_expected = blob.scaling**2 * beta**2 * float(x @ x) * (u**2).sum(1)
    torch.testing.assert_close(var, var_expected, rtol=1e-10, atol=1e-12)


# -- largest_feasible ---------------------------------------------------------------------------------
def grid_largest_feasible(f, lo, hi, threshold, points=20001):
    best = None
    for k in range(points):
        beta = lo + (hi - lo) * k / (points - 1)
        if f(beta) <= threshold:
            best = beta
    return best


monotone = st.sampled_from([
    lambda b: b,
    lambda b: b**2,
    lambda b: math.exp(3 * b) - 1,
    lambda b: math.floor(8 * b) / 8,  # steps: f non-decreasing, not continuous
    lambda b: math.log1p(b) * 0.5,
    lambda b: 0.0 if b < 0.37 else 1.0,
])


@settings(max_examples=80, deadline=None)
@given(
    f=monotone, lo=st.floats(0.0, 0.5), width=st.floats(0.01, 2.0),
    threshold=st.floats(-0.1, 3.0), iterations=st.integers(0, 14),
)
def test_largest_feasible_against_grid(f, lo, width, threshold, iterations):
    hi = lo + width
    beta, history = largest_feasible(f, lo, hi, threshold, iterations=iterations)
    assert lo <= beta <= hi
    assert all(value == f(b) for b, value in history)
    grid_best = grid_largest_feasible(f, lo, hi, threshold)
    spacing = width / 20000
    if grid_best is None and f(lo) > threshold:
        assert beta == lo and history[-1] == (lo, f(lo))  # even lo infeasible: lo, and the history says so
        return
    assert f(beta) <= threshold  # feasible
    assert any(b == beta for b, _ in history)  # the returned β was evaluated
    if f(hi) <= threshold:
        assert beta == hi and len(history) == 1
        return
    resolution = width / 2**iterations
    assert grid_best is None or beta >= grid_best - resolution - spacing
    assert grid_best is None or beta <= grid_best + spacing


def test_largest_feasible_ends_history_and_options():
    calls = []

    def f(b):
        calls.append(b)
        return b

    beta, history = largest_feasible(f, 0.0, 1.0, 2.0)
    assert beta == 1.0 and history == [(1.0, 1.0)] and calls == [1.0]
    beta, history = largest_feasible(lambda b: b, 0.0, 1.0, 0.3, iterations=10)
    assert len(history) == 11 and history[0] == (1.0, 1.0) and history[1][0] == 0.5
    assert 0.3 - 1 / 1024 <= beta <= 0.3 and beta == max(b for b, v in history if v <= 0.3)
    # nothing feasible: lo returned, its evaluation is the last entry; or raise
    beta, history = largest_feasible(lambda b: b + 1.0, 0.1, 1.0, 0.5, iterations=3)
    assert beta == 0.1 and history[-1] == (0.1, 1.1) and len(history) == 5
    with pytest.raises(ValueError, match="f\\(lo\\)"):
        largest_feasible(lambda b: b + 1.0, 0.1, 1.0, 0.5, iterations=3, on_infeasible="raise")
    with pytest.raises(ValueError, match="f\\(lo\\)"):
        largest_feasible(lambda b: 1.0, 0.4, 0.4, 0.5 - 1.0, on_infeasible="raise")
    # lo feasible but no midpoint: lo is checked once at the end
    beta, history = largest_feasible(lambda b: 0.0 if b <= 0.1 else 1.0, 0.1, 1.0, 0.5, iterations=2)
    assert beta == 0.1 and history[-1] == (0.1, 0.0)
    # NaN is infeasible
    beta, _ = largest_feasible(lambda b: float("nan") if b > 0.5 else 0.0, 0.0, 1.0, 0.1, iterations=12)
    assert 0.5 - 1 / 4096 <= beta <= 0.5
    # log scale: geometric midpoints, resolution in ratio
    beta, history = largest_feasible(lambda b: b, 1e-3, 1.0, 0.02, iterations=12, scale="log")
    assert history[1][0] == pytest.approx(math.sqrt(1e-3))
    assert beta <= 0.02 and beta >= 0.02 / (1000 ** (1 / 2**12))
    for bad in (
        lambda: largest_feasible(lambda b: b, 1.0, 0.0, 0.5),
        lambda: largest_feasible(lambda b: b, 0.0, 1.0, 0.5, scale="log"),
        lambda: largest_feasible(lambda b: b, 0.0, 1.0, 0.5, iterations=-1),
        lambda: largest_feasible(lambda b: b, 0.0, float("inf"), 0.5),
    ):
        with pytest.raises(ValueError):
            bad()
