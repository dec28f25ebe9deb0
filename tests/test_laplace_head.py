"""Last-layer Laplace head: exact curvature, GLM predictive, prior, persistence, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from bayeshead.errors import NotFittedError
from bayeshead.heads.laplace import LaplaceHead, LaplaceHeadConfig
from bayeshead.heads.laplace_curvature import reference_index
from bayeshead.registry import HEADS


def _trained_head(structure: str = "full", n: int = 80, d: int = 4, c: int = 3, seed: int = 0, **cfg):
    """A MAP-trained head on a separable-ish problem, posterior fitted (δ by marglik)."""
    torch.manual_seed(seed)
    x = torch.randn(n, d)
    y = (x @ torch.randn(c, d).T).argmax(1)
    head = LaplaceHead(d, c, LaplaceHeadConfig(hessian_structure=structure, weight_decay=1e-3, **cfg))
    opt = torch.optim.Adam(head.parameters(), lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        head.loss(x, y).total.backward()
        opt.step()
    head.fit_posthoc(x, y)
    return head, x, y


def _nll_sum(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, c: int, bias: bool) -> torch.Tensor:
    d = x.shape[1]
    w = theta[: c * d].reshape(c, d)
    logits = x @ w.T + (theta[c * d :] if bias else 0.0)
    return torch.nn.functional.cross_entropy(logits, y, reduction="sum")


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 12), d=st.integers(1, 4), c=st.integers(2, 4), bias=st.booleans(), seed=st.integers(0, 10_000)
)
def test_full_ggn_equals_the_brute_force_hessian(n, d, c, bias, seed):
    """For a softmax-linear model the GGN is the exact Hessian of the summed NLL."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=gen)
    theta = torch.randn(c * d + (c if bias else 0), generator=gen, dtype=torch.float64)
    head = LaplaceHead(d, c, LaplaceHeadConfig(hessian_structure="full", bias=bias, prior_optimization="none"))
    head.linear.double()
    with torch.no_grad():
        head.linear.weight.copy_(theta[: c * d].reshape(c, d))
        if bias:
            head.linear.bias.copy_(theta[c * d :])
    head.fit_posthoc(x, y)
    hessian = torch.autograd.functional.hessian(lambda t: _nll_sum(t, x, y, c, bias), theta)
    delta = head.prior_precision
    ggn = head.posterior.precision_matrix(delta) - delta * torch.eye(theta.numel(), dtype=torch.float64)
    torch.testing.assert_close(ggn, hessian, atol=1e-6, rtol=0)

    diag_head = LaplaceHead(d, c, LaplaceHeadConfig(hessian_structure="diag", bias=bias, prior_optimization="none"))
    diag_head.linear.double()
    diag_head.linear.load_state_dict(head.linear.state_dict())
    diag_head.fit_posthoc(x, y)
    diag = diag_head.posterior.precision_matrix(delta).diagonal() - delta
    torch.testing.assert_close(diag, hessian.diagonal(), atol=1e-6, rtol=0)


def test_kron_bias_block_is_exact_and_weight_block_is_kfac():
    torch.manual_seed(3)
    x, y = torch.randn(30, 3, dtype=torch.float64), torch.randint(0, 4, (30,))
    head = LaplaceHead(3, 4, LaplaceHeadConfig(hessian_structure="kron", prior_optimization="none"))
    head.double().fit_posthoc(x, y)
    theta = torch.cat([head.linear.weight.detach().reshape(-1), head.linear.bias.detach()])
    hessian = torch.autograd.functional.hessian(lambda t: _nll_sum(t, x, y, 4, True), theta)
    prec = head.posterior.precision_matrix(head.prior_precision) - head.prior_precision * torch.eye(16, dtype=torch.float64)
    torch.testing.assert_close(prec[12:, 12:], hessian[12:, 12:], atol=1e-8, rtol=0)
    assert torch.count_nonzero(prec[:12, 12:]) == 0  # weight-bias cross terms dropped
    probs = torch.softmax(head._mean_logits(x), -1)
    factor_b = (torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]).sum(0)
    torch.testing.assert_close(prec[:12, :12], torch.kron(factor_b, x.T @ x / 30))


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
def test_logit_covariance_is_j_sigma_jt(structure):
    head, x, _ = _trained_head(structure, n=40, d=3, c=3)
    x_new = torch.randn(5, 3)
    _, cov = head.logit_moments(x_new)
    if cov.dim() == 2:
        cov = torch.diag_embed(cov)
    sigma = torch.linalg.inv(head.posterior.precision_matrix(head.prior_precision))  # test-only inverse
    phi = torch.cat([x_new.double(), torch.ones(5, 1, dtype=torch.float64)], 1)
    jac = torch.zeros(5, 3, 12, dtype=torch.float64)
    for c in range(3):
        jac[:, c, c * 3 : c * 3 + 3] = phi[:, :3]
        jac[:, c, 9 + c] = 1.0
    torch.testing.assert_close(cov, jac @ sigma @ jac.transpose(1, 2))


@pytest.mark.parametrize("structure", ["full", "kron", "diag"])
def test_predictives_are_normalised_finite_and_less_confident_than_map(structure):
    head, x, _ = _trained_head(structure)
    x_test = 2.0 * torch.randn(64, 4)
    map_probs = torch.softmax(head._mean_logits(x_test), -1)
    for link in ("probit", "mc"):
        pred = head.predict(x_test, link_approx=link, n_samples=200, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(pred.probs).all()
        torch.testing.assert_close(pred.probs.sum(-1), torch.ones(64, dtype=pred.probs.dtype))
        assert pred.probs.max(-1).values.mean() < map_probs.max(-1).values.mean()
    assert pred.samples is not None and pred.mutual_information().gt(0).all()


def test_mc_predictive_is_seeded_and_converges_to_the_exact_glm_expectation():
    head, x, _ = _trained_head("full", n=40, d=3, c=3)
    x_test = torch.randn(6, 3)
    # Independent reference: weights θ ~ N(θ*, P⁻¹) in parameter space, f = J θ, E[softmax(f)].
    prec = head.posterior.precision_matrix(head.prior_precision)
    chol = torch.linalg.cholesky(prec)
    gen = torch.Generator().manual_seed(123)
    eps = torch.randn(200_000, 12, generator=gen, dtype=torch.float64)
    theta = torch.linalg.solve_triangular(chol.T, eps.T, upper=True).T  # cov P⁻¹
    mean = torch.cat([head.linear.weight.detach().reshape(-1), head.linear.bias.detach()]).double()
    theta = theta + mean
    logits = torch.einsum("nd,scd->snc", x_test.double(), theta[:, :9].reshape(-1, 3, 3)) + theta[:, None, 9:]
    exact = torch.softmax(logits, -1).mean(0)

    def err(s: int) -> float:
        pred = head.predict(x_test, link_approx="mc", n_samples=s, generator=torch.Generator().manual_seed(7))
        return float((pred.probs - exact).abs().max())

    again = head.predict(x_test, link_approx="mc", n_samples=16, generator=torch.Generator().manual_seed(7))
    first = head.predict(x_test, link_approx="mc", n_samples=16, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(again.probs, first.probs, rtol=0, atol=0)
    assert err(20_000) < 0.01
    assert err(20_000) < err(10)


def test_state_dict_round_trips_through_safetensors(tmp_path):
    head, _, _ = _trained_head("kron", prior_structure="scalar")
    path = tmp_path / "head.safetensors"
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path))
    fresh = LaplaceHead(4, 3, head.config)
    assert not fresh.is_fitted
    fresh.load_state_dict(load_file(str(path)))
    assert fresh.is_fitted
    x = torch.randn(5, 4)
    torch.testing.assert_close(fresh.predict(x).probs, head.predict(x).probs, rtol=0, atol=0)
    torch.testing.assert_close(fresh.log_marginal_likelihood(), head.log_marginal_likelihood())


def test_full_structure_round_trips_and_per_class_prior_is_optimised(tmp_path):
    head, _, _ = _trained_head("full", prior_structure="per_class")
    assert head.prior_precision.shape == (3,) and head.prior_precision.unique().numel() == 3
    fresh = LaplaceHead(4, 3, head.config)
    save_file(dict(head.state_dict()), str(tmp_path / "h.safetensors"))
    fresh.load_state_dict(load_file(str(tmp_path / "h.safetensors")))
    x = torch.randn(5, 4)
    torch.testing.assert_close(fresh.predict(x).probs, head.predict(x).probs, rtol=0, atol=0)


def test_marglik_optimum_beats_neighbouring_priors():
    head, _, _ = _trained_head("diag", marglik_steps=300)
    best = head.log_marginal_likelihood()
    for factor in (0.5, 2.0):
        assert head.log_marginal_likelihood(head.prior_precision * factor) < best


def test_before_fit_it_refuses_to_predict_but_is_the_map_head_in_training_and_the_loss_is_the_map_loss():
    torch.manual_seed(0)
    head = LaplaceHead(4, 3, LaplaceHeadConfig(weight_decay=0.2))
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    with pytest.raises(NotFittedError, match=r"call head.fit_posthoc\(train_features, train_labels\)"):
        head.predict(x)
    with head.training_predictive():
        torch.testing.assert_close(head.predict(x).probs, torch.softmax(head.linear(x), -1))
    with pytest.raises(NotFittedError):
        head.predict(x)  # the block restored the refusal
    ce = torch.nn.functional.cross_entropy(head.linear(x), y)
    torch.testing.assert_close(head.loss(x, y).total, ce + 0.1 * head.linear.weight.pow(2).sum())
    with pytest.raises(RuntimeError, match="call fit_posthoc"):
        head.log_marginal_likelihood()


def test_errors_and_registry():
    assert HEADS.get("laplace") is LaplaceHead
    with pytest.raises(ValueError, match="per_class.*full' or 'diag'"):
        LaplaceHeadConfig(hessian_structure="kron", prior_structure="per_class")
    head = LaplaceHead(4, 3, LaplaceHeadConfig(prior_optimization="gridsearch"))
    with pytest.raises(ValueError, match="needs validation data"):
        head.fit_posthoc(torch.randn(5, 4), torch.randint(0, 3, (5,)))
    assert reference_index(2, 2, True).tolist() == [0, 1, 3, 4, 2, 5]
