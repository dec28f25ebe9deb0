"""Landing optimizer ("landing"): the field formula, its attraction to St(k, r), the drift bound
we state, AdamW on Euclidean tensors, and state_dict resume.

Stated bound (documented in bayeshead.manifolds.landing): Adam's per-coordinate normalisation
breaks the exact tangency of the relative term, so X drifts until the attraction λ·X(XᵀX − I)
balances the gradient term, i.e. ε ≈ O(‖G‖/λ). For losses with gradient scale 1e-2, λ = 1 and
lr = 1e-3, ε(X) = ‖XᵀX − I‖_F stays ≤ 0.04·√r over 200 steps (k ≤ 24); with λ = 0 it does not.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead import OPTIMIZERS
from bayeshead.manifolds import orthogonality_error, random_stiefel
from bayeshead.manifolds.landing import LandingAdamW, LandingConfig, landing_field

LANDING_BOUND_PER_SQRT_R = 0.04


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 12), r=st.integers(1, 6), lam=st.floats(0, 2), seed=st.integers(0, 999))
def test_field_equals_skew_formula(k, r, lam, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k, r, generator=g, dtype=torch.float64)
    grad = torch.randn(k, r, generator=g, dtype=torch.float64)
    m = grad @ x.T
    explicit = 0.5 * (m - m.T) @ x + lam * x @ (x.T @ x - torch.eye(r, dtype=torch.float64))
    torch.testing.assert_close(landing_field(x, grad, lam), explicit, rtol=1e-12, atol=1e-12)


def test_field_is_zero_at_critical_points_on_manifold():
    x = random_stiefel(9, 3, dtype=torch.float64)
    sym = torch.randn(3, 3, dtype=torch.float64)
    grad = x @ (sym + sym.T)  # Euclidean gradient normal to the manifold: Riemannian gradient 0
    assert landing_field(x, grad, 1.0).abs().max() < 1e-12


def _loss(x, seed, scale):
    g = torch.Generator().manual_seed(seed)
    k, r = x.shape
    c = torch.randn(k, k, generator=g) / k**0.5
    t = torch.randn(k, r, generator=g)
    return scale * (0.5 * ((c @ x - t) ** 2).sum() + torch.cos(x).sum())


def _run(k, r, seed, penalty, steps=200, lr=1e-3, scale=1e-2):
    torch.manual_seed(seed)
    x = torch.nn.Parameter(random_stiefel(k, r))
    opt = OPTIMIZERS.create(
        "landing", [{"params": [x], "geometry": "stiefel"}], LandingConfig(lr=lr, penalty=penalty)
    )
    worst = 0.0
    for _ in range(steps):
        opt.zero_grad()
        _loss(x, seed, scale).backward()
        opt.step()
        worst = max(worst, orthogonality_error(x).item())
    return worst


@settings(max_examples=5, deadline=None)
@given(k=st.integers(2, 24), data=st.data(), seed=st.integers(0, 999))
def test_landing_stays_within_stated_bound(k, data, seed):
    r = data.draw(st.integers(1, k))
    assert _run(k, r, seed, penalty=1.0) <= LANDING_BOUND_PER_SQRT_R * r**0.5


def test_without_attraction_it_drifts_past_the_bound():
    assert _run(12, 4, 0, penalty=0.0, scale=1.0) > 5 * LANDING_BOUND_PER_SQRT_R * 4**0.5


def test_attraction_pulls_back_to_manifold():
    torch.manual_seed(0)
    x = torch.nn.Parameter(random_stiefel(16, 4) * 1.3)
    opt = LandingAdamW([{"params": [x], "geometry": "stiefel"}], lr=1e-2, penalty=1.0)
    start = orthogonality_error(x).item()
    for _ in range(300):
        opt.zero_grad()
        (0.0 * x.sum()).backward()  # zero loss gradient: only the attraction term acts
        opt.step()
    assert orthogonality_error(x).item() < 0.05 * start


def test_euclidean_equals_torch_adamw_and_resume():
    torch.manual_seed(0)
    w0 = torch.randn(6, 4)
    x0 = random_stiefel(8, 2)

    def make():
        w = torch.nn.Parameter(w0.clone())
        x = torch.nn.Parameter(x0.clone())
        opt = LandingAdamW(
            [{"params": [w], "geometry": "euclidean"}, {"params": [x], "geometry": "stiefel"}],
            lr=1e-2, weight_decay=0.05, penalty=0.5,
        )
        return w, x, opt

    def loss(w, x):
        return (torch.sin(w) ** 2).sum() + (x * torch.arange(16.0).view(8, 2)).sum()

    w_ref = torch.nn.Parameter(w0.clone())
    ref = torch.optim.AdamW([w_ref], lr=1e-2, weight_decay=0.05)
    w, x, opt = make()
    for _ in range(12):
        opt.zero_grad()
        loss(w, x).backward()
        opt.step()
        ref.zero_grad()
        (torch.sin(w_ref) ** 2).sum().backward()
        ref.step()
        assert torch.equal(w, w_ref)

    w1, x1, opt1 = make()
    for _ in range(6):
        opt1.zero_grad()
        loss(w1, x1).backward()
        opt1.step()
    state, params = copy.deepcopy(opt1.state_dict()), (w1.detach().clone(), x1.detach().clone())
    w2, x2, opt2 = make()
    with torch.no_grad():
        w2.copy_(params[0])
        x2.copy_(params[1])
    opt2.load_state_dict(state)
    for _ in range(6):
        opt2.zero_grad()
        loss(w2, x2).backward()
        opt2.step()
    assert torch.equal(w2, w) and torch.equal(x2, x)


def test_invalid_arguments_are_explained():
    with pytest.raises(ValueError, match="penalty"):
        LandingAdamW([torch.nn.Parameter(torch.zeros(2, 2))], penalty=-1.0)
    with pytest.raises(ValueError, match="same"):
        landing_field(torch.zeros(3, 2), torch.zeros(2, 3), 1.0)
