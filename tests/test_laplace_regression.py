"""Last-layer Laplace for regression: closed forms, laplace-torch agreement, recovery, round trip."""

from __future__ import annotations

import math

# laplace-torch is the reference these tests exist for; a missing install must fail, not skip.
import laplace
import pytest
import torch
from _regression_helpers import train_full_batch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bayeshead.heads.laplace_regression import LaplaceRegressionConfig, LaplaceRegressionHead
from bayeshead.registry import HEADS

N, D, K = 60, 4, 2
TOL = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    w = torch.randn(K, D, generator=g, dtype=torch.float64)
    y = x @ w.T + 0.5 + 0.3 * torch.randn(N, K, generator=g, dtype=torch.float64)
    weight = w + 0.1 * torch.randn(K, D, generator=g, dtype=torch.float64)
    bias = 0.4 + 0.1 * torch.randn(K, generator=g, dtype=torch.float64)
    x_test = 2.0 * torch.randn(7, D, generator=g, dtype=torch.float64)
    return x, y, weight, bias, x_test


def _head(data, bias=True, **cfg) -> LaplaceRegressionHead:
    _, _, weight, b, _ = data
    head = LaplaceRegressionHead(D, K, LaplaceRegressionConfig(bias=bias, **cfg)).double()
    with torch.no_grad():
        head.linear.weight.copy_(weight)
        if bias:
            head.linear.bias.copy_(b)
    return head


def _reference(head, data, sigma, delta):
    x, y, *_ = data
    model = nn.Sequential(nn.Identity(), nn.Linear(D, K, bias=head.config.bias)).double()
    model[1].load_state_dict(head.linear.state_dict())
    ref = laplace.Laplace(
        model, "regression", subset_of_weights="last_layer", hessian_structure="full",
        last_layer_name="1", sigma_noise=sigma, prior_precision=delta,
    )
    ref.fit(DataLoader(TensorDataset(x, y), batch_size=16))
    return ref


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("sigma, delta", [(0.4, 0.7), (1.3, 0.05), (0.1, 20.0)])
def test_marglik_and_predictive_variance_match_laplace_torch(data, bias, sigma, delta):
    x, y, _, _, x_test = data
    head = _head(data, bias=bias, marglik="none", learn_noise=False, noise_init=sigma, prior_precision=delta)
    fitted = head.fit_posthoc(x, y)
    assert fitted["prior_precision"] == delta and fitted["noise_std"] == pytest.approx(sigma, rel=1e-15)
    ref = _reference(head, data, sigma, delta)
    assert float(head.log_marginal_likelihood()) == pytest.approx(float(ref.log_marginal_likelihood()), abs=1e-4, rel=0)
    # the posterior precision itself: laplace-torch orders θ as vec(W) row-major then b
    eye_k = torch.eye(K, dtype=torch.float64)
    precision = head.precision_chol @ head.precision_chol.T
    if bias:
        perm = [j * (D + 1) + i for j in range(K) for i in range(D)] + [j * (D + 1) + D for j in range(K)]
        mine = torch.kron(eye_k, precision)[perm][:, perm]
    else:
        mine = torch.kron(eye_k, precision)
    torch.testing.assert_close(mine, ref.posterior_precision, **TOL)
    f_mean, f_var = ref(x_test, pred_type="glm")
    pred = head.predict(x_test)
    torch.testing.assert_close(pred.mean, f_mean.detach(), **TOL)
    torch.testing.assert_close(pred.var, torch.diagonal(f_var, dim1=-2, dim2=-1) + sigma**2, **TOL)
    torch.testing.assert_close(f_var, torch.diag_embed(torch.diagonal(f_var, dim1=-2, dim2=-1)))  # outputs independent


def test_precision_is_the_exact_hessian_of_the_negative_log_posterior(data):
    x, y, *_ = data
    head = _head(data, marglik="none", learn_noise=False, noise_init=0.6, prior_precision=0.3)
    head.fit_posthoc(x, y)
    phi = torch.cat([x, torch.ones(N, 1, dtype=torch.float64)], 1)

    def neg_log_posterior(theta):  # one output's parameters (D + 1,)
        return 0.5 * ((y[:, 0] - phi @ theta) ** 2).sum() / 0.36 + 0.5 * 0.3 * theta.pow(2).sum()

    hessian = torch.autograd.functional.hessian(neg_log_posterior, head.theta()[0])
    torch.testing.assert_close(head.precision_chol @ head.precision_chol.T, hessian, rtol=1e-12, atol=1e-12)


def test_evidence_fit_maximises_laplace_torchs_marginal_likelihood(data):
    x, y, *_ = data
    head = _head(data, marglik="prior_and_noise")
    fitted = head.fit_posthoc(x, y)
    ref = _reference(head, data, 1.0, 1.0)
    log_delta = torch.tensor(math.log(fitted["prior_precision"]), dtype=torch.float64, requires_grad=True)
    log_sigma = torch.tensor(math.log(fitted["noise_std"]), dtype=torch.float64, requires_grad=True)
    value = ref.log_marginal_likelihood(log_delta.exp(), log_sigma.exp())
    grad = torch.autograd.grad(value, [log_delta, log_sigma])
    assert max(abs(float(g)) for g in grad) < 1e-6 * abs(float(value.detach()))
    assert float(value.detach()) == pytest.approx(fitted["log_marglik"], abs=1e-4, rel=0)
    # an independent maximisation (L-BFGS on laplace-torch's objective) lands on the same point
    params = [torch.zeros((), dtype=torch.float64, requires_grad=True) for _ in range(2)]
    opt = torch.optim.LBFGS(params, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -ref.log_marginal_likelihood(params[0].exp(), params[1].exp())
        loss.backward()
        return loss

    opt.step(closure)
    assert math.exp(float(params[0].detach())) == pytest.approx(fitted["prior_precision"], rel=1e-4)
    assert math.exp(float(params[1].detach())) == pytest.approx(fitted["noise_std"], rel=1e-4)


def test_prior_only_fit_keeps_the_training_noise(data):
    x, y, *_ = data
    head = _head(data, marglik="prior", learn_noise=False, noise_init=0.5)
    fitted = head.fit_posthoc(x, y)
    assert fitted["noise_std"] == pytest.approx(0.5, rel=1e-15)
    delta = torch.tensor(fitted["prior_precision"], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(head.log_marginal_likelihood(delta, 0.5), delta)
    assert abs(float(grad)) < 1e-8


def test_recovers_a_linear_gaussian_model_after_map_training():
    g = torch.Generator().manual_seed(1)
    n, d, sigma = 3000, 5, 0.5
    w_true, b_true = torch.randn(1, d, generator=g), torch.tensor([1.5])
    x = torch.randn(n, d, generator=g)
    y = x @ w_true.T + b_true + sigma * torch.randn(n, 1, generator=g)
    head = LaplaceRegressionHead(d, 1)
    train_full_batch(head, x, y)
    assert float(head.log_noise.detach().exp()) == pytest.approx(sigma, rel=0.05)
    fitted = head.fit_posthoc(x, y.squeeze(1))
    torch.testing.assert_close(head.linear.weight.detach(), w_true, atol=0.05, rtol=0)
    assert float(head.linear.bias.detach()) == pytest.approx(1.5, abs=0.05)
    assert fitted["noise_std"] == pytest.approx(sigma, rel=0.05)
    # the posterior covariance of θ approaches σ²(ΦᵀΦ)⁻¹ for a weak prior: check a 90% interval's coverage
    x_new = torch.randn(4000, d, generator=g)
    y_new = x_new @ w_true.T + b_true + sigma * torch.randn(4000, 1, generator=g)
    pred = head.predict(x_new)
    z = ((y_new - pred.mean) / pred.var.sqrt()).abs()
    assert float((z <= 1.6448536).double().mean()) == pytest.approx(0.90, abs=0.02)


def test_before_fitting_it_refuses_except_during_training_with_the_map_mean_and_training_noise(data):
    from bayeshead.errors import NotFittedError

    x, _, _, _, x_test = data
    head = _head(data, learn_noise=False, noise_init=0.7)
    with pytest.raises(NotFittedError, match="fit_posthoc"):
        head.predict(x_test)
    with head.training_predictive():
        pred = head.predict(x_test)
    torch.testing.assert_close(pred.var, torch.full_like(pred.var, 0.49))
    with pytest.raises(RuntimeError, match="fit_posthoc"):
        head.log_marginal_likelihood()


def test_state_dict_round_trip_restores_the_posterior(data):
    x, y, _, _, x_test = data
    head = _head(data)
    head.fit_posthoc(x, y)
    clone = HEADS.get("laplace_regression")(D, K, LaplaceRegressionConfig()).double()
    clone.load_state_dict(head.state_dict())
    a, b = head.predict(x_test), clone.predict(x_test)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.var, b.var)
    assert float(clone.log_marginal_likelihood()) == float(head.log_marginal_likelihood())


def test_degenerate_fit_warns_and_bad_calls_explain(data):
    x, y, *_ = data
    head = _head(data)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
    with pytest.warns(RuntimeWarning, match="hit a bound"):
        head.fit_posthoc(x, y)
    with pytest.raises(TypeError, match="floating point"):
        head.fit_posthoc(x, torch.ones(N, K, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected targets of shape \(60, 2\)"):
        head.fit_posthoc(x, y[:, :1])
