"""Riemannian Adam ("riemannian_adam"): stays on St(m, r); equals geoopt on Stiefel factors and
torch AdamW on Euclidean tensors step for step; state_dict resumes exactly."""

from __future__ import annotations

import copy

import geoopt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead import OPTIMIZERS
from bayeshead.manifolds import orthogonality_error, random_stiefel
from bayeshead.manifolds.riemannian_adam import RiemannianAdamConfig, RiemannianAdamW


@st.composite
def shapes(draw):
    m = draw(st.integers(2, 24))
    r = draw(st.integers(1, m))
    return m, r


def smooth_loss(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A random smooth loss: a quadratic plus a trigonometric term with random coefficients."""
    g = torch.Generator().manual_seed(seed)
    m, r = x.shape
    c = torch.randn(m, m, generator=g, dtype=torch.float64).to(x.dtype)
    t = torch.randn(m, r, generator=g, dtype=torch.float64).to(x.dtype)
    w = torch.randn(m, r, generator=g, dtype=torch.float64).to(x.dtype)
    return 0.5 * ((c @ x - t) ** 2).sum() + (w * torch.cos(3 * x)).sum()


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@settings(max_examples=5, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 2**16), lr=st.sampled_from([1e-3, 1e-2, 5e-2]))
def test_stays_on_stiefel_for_200_steps(dtype, tol, shape, seed, lr):
    m, r = shape
    torch.manual_seed(seed)
    x = geoopt.ManifoldParameter(random_stiefel(m, r, dtype=dtype), manifold=geoopt.EuclideanStiefel())
    opt = OPTIMIZERS.create("riemannian_adam", [{"params": [x], "geometry": "stiefel"}],
                            RiemannianAdamConfig(lr=lr))
    start = smooth_loss(x, seed).item()
    for _ in range(200):
        opt.zero_grad()
        smooth_loss(x, seed).backward()
        opt.step()
    assert orthogonality_error(x).item() <= tol
    assert smooth_loss(x, seed).item() < start  # it optimises, not just retracts


def test_stiefel_step_equals_geoopt():
    torch.manual_seed(0)
    x0 = random_stiefel(12, 4, dtype=torch.float64)
    ours = geoopt.ManifoldParameter(x0.clone(), manifold=geoopt.EuclideanStiefel())
    ref = geoopt.ManifoldParameter(x0.clone(), manifold=geoopt.EuclideanStiefel())
    opt_ours = RiemannianAdamW([ours], lr=1e-2, weight_decay=0.3)  # no effect on Stiefel factors
    opt_ref = geoopt.optim.RiemannianAdam([ref], lr=1e-2)
    for _ in range(25):
        for p, o in ((ours, opt_ours), (ref, opt_ref)):
            o.zero_grad()
            smooth_loss(p, 1).backward()
            o.step()
        torch.testing.assert_close(ours.data, ref.data, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_euclidean_equals_torch_adamw_step_for_step(dtype):
    torch.manual_seed(0)
    w0, b0 = torch.randn(7, 5, dtype=dtype), torch.randn(5, dtype=dtype)
    ours = [torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())]
    ref = [torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())]
    stiefel = geoopt.ManifoldParameter(random_stiefel(6, 2, dtype=dtype), manifold=geoopt.EuclideanStiefel())
    cfg = RiemannianAdamConfig(lr=3e-2, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-7)
    opt_ours = OPTIMIZERS.create(
        "riemannian_adam",
        [{"params": ours, "geometry": "euclidean"}, {"params": [stiefel], "geometry": "stiefel"}],
        cfg,
    )
    opt_ref = torch.optim.AdamW(ref, lr=3e-2, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-7)
    x = torch.randn(9, 7, dtype=dtype)

    def loss(params):
        return (torch.tanh(x @ params[0] + params[1]) ** 2).sum()

    for _ in range(30):
        for params, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad()
            loss(params).backward()
            opt.step()
        opt_ours.zero_grad()
        (stiefel.sum() + loss(ours)).backward()  # the Stiefel factor steps too; must not interfere
        opt_ours.step()
        opt_ref.zero_grad()
        loss(ref).backward()
        opt_ref.step()
        for a, b in zip(ours, ref, strict=True):
            assert torch.equal(a, b), (a - b).abs().max()


def test_state_dict_resumes_exactly():
    torch.manual_seed(0)

    def make():
        torch.manual_seed(1)
        x = geoopt.ManifoldParameter(random_stiefel(10, 3), manifold=geoopt.EuclideanStiefel())
        theta = torch.nn.Parameter(torch.randn(3, 3))
        groups = [{"params": [x], "geometry": "stiefel"}, {"params": [theta], "geometry": "euclidean"}]
        cfg = RiemannianAdamConfig(lr=1e-2, weight_decay=0.01, stiefel_lr=5e-3, stabilize=4)
        return x, theta, OPTIMIZERS.create("riemannian_adam", groups, cfg)

    def run(x, theta, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            (smooth_loss(x, 3) + (theta**2).sum() + (x[:3] * theta).sum()).backward()
            opt.step()

    x, theta, opt = make()
    run(x, theta, opt, 10)

    x1, theta1, opt1 = make()
    run(x1, theta1, opt1, 5)
    saved_params = (x1.detach().clone(), theta1.detach().clone())
    saved_state = copy.deepcopy(opt1.state_dict())
    x2, theta2, opt2 = make()
    with torch.no_grad():
        x2.copy_(saved_params[0])
        theta2.copy_(saved_params[1])
    opt2.load_state_dict(saved_state)
    run(x2, theta2, opt2, 5)
    assert torch.equal(x2, x) and torch.equal(theta2, theta)
    assert opt2.param_groups[0]["lr"] == 5e-3 and opt2.param_groups[1]["lr"] == 1e-2


def test_plain_tensor_tagged_stiefel_uses_stiefel_geometry():
    x = torch.nn.Parameter(random_stiefel(8, 3))
    opt = RiemannianAdamW([{"params": [x], "geometry": "stiefel"}], lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        smooth_loss(x, 0).backward()
        opt.step()
    assert orthogonality_error(x).item() < 1e-5
