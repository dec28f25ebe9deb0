"""Gaussian, variance-scaling and VBLL regression heads: closed forms, recovery of a known
linear-Gaussian model, and state_dict round trips of every regression head."""

from __future__ import annotations

import math

import pytest
import torch
from _regression_helpers import linear_gaussian, train_full_batch
from scipy import optimize, stats

from bayeshead.heads.gaussian import GaussianHead, GaussianHeadConfig
from bayeshead.heads.variance_scaling import VarianceScalingConfig, VarianceScalingHead
from bayeshead.heads.vbll_regression import VBLLRegressionConfig, VBLLRegressionHead
from bayeshead.registry import HEADS
from bayeshead.types import GaussianPredictive

REGRESSION_HEADS = ["gaussian", "laplace_regression", "variance_scaling", "vbll_regression"]


def test_the_regression_heads_are_registered_as_regression():
    for name in REGRESSION_HEADS:
        assert HEADS.get(name).task_type == "regression", name
    assert HEADS.get("variance_scaling").posthoc_data == "validation"
    assert HEADS.get("laplace_regression").posthoc_data == "train"
    assert HEADS.get("gaussian").posthoc_data == "none"


@pytest.mark.parametrize("variance", ["homoscedastic", "heteroscedastic"])
def test_loss_is_the_gaussian_nll_plus_weight_decay(variance):
    head = GaussianHead(3, 2, GaussianHeadConfig(variance=variance, weight_decay=0.3, min_variance=0.0))
    torch.nn.init.normal_(head.linear.weight)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    mean, var = head.mean_and_var(x)
    want = -torch.distributions.Normal(mean, var.sqrt()).log_prob(y).sum(-1).mean()
    decay = 0.15 * head.linear.weight.pow(2).sum()
    if variance == "heteroscedastic":
        decay = decay + 0.15 * head.log_var.weight.pow(2).sum()
    terms = head.loss(x, y)
    torch.testing.assert_close(terms["nll"], want)
    torch.testing.assert_close(terms.total, want + decay)
    pred = head.predict(x)
    assert isinstance(pred, GaussianPredictive)
    torch.testing.assert_close(pred.nll(y).mean(), want)


def test_homoscedastic_head_recovers_weights_and_noise():
    x, y, w, b = linear_gaussian(3000, 5, 0.5, seed=0)
    head = GaussianHead(5, 1, GaussianHeadConfig(variance="homoscedastic"))
    train_full_batch(head, x, y)
    torch.testing.assert_close(head.linear.weight.detach(), w, atol=0.03, rtol=0)
    assert float(head.linear.bias.detach()) == pytest.approx(float(b), abs=0.03)
    noise = float(head.predict(x[:1]).var.detach().sqrt())
    assert noise == pytest.approx(0.5, rel=0.03)
    # at the optimum the MLE noise variance is the mean squared residual (closed form)
    residual = (y - head.predict(x).mean.detach()).pow(2).mean()
    assert noise**2 == pytest.approx(float(residual), rel=1e-3)


def test_heteroscedastic_head_recovers_the_log_variance_function():
    g = torch.Generator().manual_seed(3)
    n, d = 8000, 3
    x = torch.randn(n, d, generator=g)
    w, a, c = torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[0.8, 0.0, -0.5]]), -1.0
    log_var = x @ a.T + c
    y = x @ w.T + 0.3 + (0.5 * log_var).exp() * torch.randn(n, 1, generator=g)
    head = GaussianHead(d, 1, GaussianHeadConfig(variance="heteroscedastic", min_variance=0.0))
    train_full_batch(head, x, y, steps=300)
    torch.testing.assert_close(head.linear.weight.detach(), w, atol=0.03, rtol=0)
    torch.testing.assert_close(head.log_var.weight.detach(), a, atol=0.06, rtol=0)
    assert float(head.log_var.bias.detach()) == pytest.approx(c, abs=0.06)


def test_weight_decay_gives_the_ridge_solution():
    """With λ > 0 the stationary W solves (ΦᵀΦ/(N v) + λI) W = Φᵀ(y − b)/(N v): ridge with penalty N v λ."""
    x, y, _, _ = linear_gaussian(400, 4, 0.7, seed=5)
    x, y = x.double(), y.double()
    lam = 0.05
    head = GaussianHead(4, 1, GaussianHeadConfig(variance="homoscedastic", weight_decay=lam)).double()
    train_full_batch(head, x, y, steps=300)
    v = float(head.predict(x[:1]).var.detach())
    b = float(head.linear.bias.detach())
    n = x.shape[0]
    ridge = torch.linalg.solve(x.T @ x / (n * v) + lam * torch.eye(4, dtype=torch.float64), x.T @ (y - b) / (n * v))
    torch.testing.assert_close(head.linear.weight.detach(), ridge.T, atol=1e-6, rtol=0)
    unpenalised = torch.linalg.lstsq(torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1), y).solution[:4]
    assert float(head.linear.weight.detach().norm()) < float(unpenalised.norm())


def test_variance_scale_is_the_closed_form_nll_minimiser():
    head = VarianceScalingHead(4, 2, VarianceScalingConfig(variance="heteroscedastic"))
    torch.nn.init.normal_(head.linear.weight)
    torch.nn.init.normal_(head.log_var.weight, std=0.3)
    x, y = torch.randn(200, 4), 3.0 * torch.randn(200, 2)
    fitted = head.fit_posthoc(x, y)
    mean, var = (t.detach().double() for t in head.mean_and_var(x))
    y64 = y.double()

    def nll(s):
        return float(-stats.norm.logpdf(y64.numpy(), mean.numpy(), (s * var).sqrt().numpy()).mean())

    best = optimize.minimize_scalar(nll, bounds=(1e-3, 1e3), method="bounded", options={"xatol": 1e-10})
    assert fitted["variance_scale"] == pytest.approx(best.x, rel=1e-6)
    pred = head.predict(x)
    torch.testing.assert_close(pred.mean, mean.float())
    torch.testing.assert_close(pred.var.double(), fitted["variance_scale"] * var)
    assert float(pred.nll(y).mean().detach()) == pytest.approx(best.fun * 2, rel=1e-5)  # 2 outputs summed


def test_variance_scaling_repairs_an_overconfident_head():
    x, y, _, _ = linear_gaussian(3000, 5, 0.5, seed=0)
    head = VarianceScalingHead(5, 1, VarianceScalingConfig(variance="homoscedastic"))
    train_full_batch(head, x, y)
    x_val, y_val, _, _ = linear_gaussian(3000, 5, 1.0, seed=0)  # same weights, twice the noise
    x_val = x_val + 0.0
    fitted = head.fit_posthoc(x_val, y_val)
    assert fitted["variance_scale"] == pytest.approx(4.0, rel=0.08)
    z = ((y_val - head.predict(x_val).mean) / head.predict(x_val).var.sqrt()).abs()
    assert float((z <= 1.6448536).float().mean()) == pytest.approx(0.90, abs=0.02)


def test_variance_scale_is_clipped_with_a_warning():
    head = VarianceScalingHead(2, 1, VarianceScalingConfig(max_scale=10.0, noise_init=0.01))
    x, y = torch.randn(50, 2), 100.0 * torch.randn(50)
    with pytest.warns(RuntimeWarning, match="clipped to 10"):
        fitted = head.fit_posthoc(x, y)
    assert fitted["variance_scale"] == 10.0
    with pytest.raises(ValueError, match="min_scale must be below max_scale"):
        VarianceScalingConfig(min_scale=2.0, max_scale=1.0)


def test_vbll_regression_recovers_weights_and_noise_and_predicts_gaussians():
    x, y, w, _ = linear_gaussian(3000, 5, 0.5, seed=2)
    y = y - (y.mean() - (x @ w.T).mean())  # vbll has no bias by default: remove the offset
    head = VBLLRegressionHead(5, 1, VBLLRegressionConfig(covariance="dense", n_train=3000))
    train_full_batch(head, x, y, steps=300)
    torch.testing.assert_close(head.posterior.mean.detach(), w, atol=0.03, rtol=0)
    assert float(head.noise_var().detach().sqrt()) == pytest.approx(0.5, rel=0.03)
    pred = head.predict(x[:10])
    assert isinstance(pred, GaussianPredictive) and pred.var.shape == (10, 1)
    with torch.no_grad():
        quad = torch.einsum("bi,ij,bj->b", x[:10], head.posterior.covariance()[0], x[:10])
    torch.testing.assert_close(pred.var[:, 0], quad + head.noise_var(), rtol=1e-5, atol=1e-7)
    assert torch.all(quad > 0)


def _trained(name: str, k: int):
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(64, 4, generator=g), torch.randn(64, k, generator=g)
    cfg = HEADS.config_class(name)(n_train=64)
    head = HEADS.get(name)(4, k, cfg)
    train_full_batch(head, x, y, steps=20)
    if head.posthoc_data != "none":
        head.fit_posthoc(x, y)
    return head, cfg


@pytest.mark.parametrize("name", REGRESSION_HEADS)
@pytest.mark.parametrize("k", [1, 3])
def test_state_dict_round_trip(name, k):
    head, cfg = _trained(name, k)
    clone = HEADS.get(name)(4, k, cfg)
    clone.load_state_dict(head.state_dict())
    x = torch.randn(9, 4)
    a, b = head.predict(x), clone.predict(x)
    assert isinstance(a, GaussianPredictive) and a.mean.shape == (9, k)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.var, b.var)
    assert torch.all(a.var > 0)


def test_regression_heads_refuse_class_labels():
    for name in REGRESSION_HEADS:
        head = HEADS.get(name)(3, 1, HEADS.config_class(name)(n_train=4))
        with pytest.raises(TypeError, match="floating point"):
            head.loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    assert math.isfinite(float(GaussianHead(3, 1).loss(torch.randn(4, 3), torch.randn(4)).total.detach()))
