"""VBLL regression head: the ELBO against the exact conjugate answer, training, Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.heads.vbll_regression import VBLLRegressionConfig, VBLLRegressionHead

S0, SIGMA = 0.7, 0.4  # prior variance ('none' width scaling) and fixed noise std


def _problem(n: int = 30, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    phi = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w = torch.randn(d, generator=gen, dtype=torch.float64)
    y = phi @ w + SIGMA * torch.randn(n, generator=gen, dtype=torch.float64)
    return phi, y


def _fixed_noise_head(d: int, n: int, covariance: str = "dense") -> VBLLRegressionHead:
    cfg = VBLLRegressionConfig(
        covariance=covariance,
        prior_scale=S0,
        prior_width_scaling="none",
        noise_init=SIGMA,
        learn_noise=False,
        noise_prior=False,
        n_train=n,
    )
    head = VBLLRegressionHead(d, 1, cfg).double()
    with torch.no_grad():  # the fp32 initial value of log σ is not exact in fp64
        head.noise_log_std.fill_(math.log(SIGMA))
    return head


def _exact_posterior(phi: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = phi.shape[1]
    prec = torch.eye(d, dtype=phi.dtype) / S0 + phi.T @ phi / SIGMA**2
    cov = torch.linalg.inv(prec)
    cov = 0.5 * (cov + cov.T)
    return cov @ phi.T @ y / SIGMA**2, cov


def _log_evidence(phi: torch.Tensor, y: torch.Tensor) -> float:
    n = phi.shape[0]
    marginal = SIGMA**2 * torch.eye(n, dtype=phi.dtype) + S0 * phi @ phi.T
    return float(torch.distributions.MultivariateNormal(torch.zeros(n, dtype=phi.dtype), marginal).log_prob(y))


@torch.no_grad()
def _set_dense(head: VBLLRegressionHead, mean: torch.Tensor, chol: torch.Tensor) -> None:
    post = head.posterior
    post.mean.copy_(mean.reshape(post.mean.shape))
    post.log_scale.copy_(torch.diagonal(chol).log().reshape(post.log_scale.shape))
    post.tril.copy_(chol.reshape(post.tril.shape))


def _elbo(head: VBLLRegressionHead, phi: torch.Tensor, y: torch.Tensor) -> float:
    """−N·loss on the full data set (data term averaged over N, KL weighted 1/N) = the ELBO."""
    return -phi.shape[0] * float(head.loss(phi, y).total.detach())


def test_elbo_at_exact_posterior_equals_log_evidence() -> None:
    phi, y = _problem()
    head = _fixed_noise_head(phi.shape[1], phi.shape[0])
    mean, cov = _exact_posterior(phi, y)
    _set_dense(head, mean, torch.linalg.cholesky(cov))
    evidence = _log_evidence(phi, y)
    assert _elbo(head, phi, y) == pytest.approx(evidence, rel=1e-8)


@settings(max_examples=30, deadline=None)
@given(
    mean_shift=st.lists(st.floats(-0.3, 0.3), min_size=3, max_size=3),
    chol_shift=st.lists(st.floats(-0.3, 0.3), min_size=6, max_size=6),
)
def test_any_other_posterior_has_a_smaller_elbo(mean_shift: list[float], chol_shift: list[float]) -> None:
    shifts = torch.tensor(mean_shift + chol_shift, dtype=torch.float64)
    if shifts.abs().max() < 1e-2:  # KL(q ‖ posterior) is quadratic in the shift: keep it visible
        shifts[0] = 0.05
    phi, y = _problem()
    head = _fixed_noise_head(3, phi.shape[0])
    mean, cov = _exact_posterior(phi, y)
    chol = torch.linalg.cholesky(cov)
    _set_dense(head, mean, chol)
    best = _elbo(head, phi, y)
    rows, cols = torch.tril_indices(3, 3)
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[rows, cols] = shifts[3:] * torch.diagonal(chol).min()
    new_chol = chol + delta
    # keep a positive diagonal (Cholesky factors are unique only with a positive diagonal)
    new_chol.diagonal().abs_().clamp_(min=1e-3)
    _set_dense(head, mean + shifts[:3] * cov.diagonal().sqrt(), new_chol)
    assert _elbo(head, phi, y) < best


def test_training_converges_to_the_exact_posterior() -> None:
    """Full-batch gradient training (Adam, then L-BFGS) of the dense head on fixed features.
    Tolerances: mean within 1e-4 absolute, covariance within 1e-4 relative (Frobenius)."""
    torch.manual_seed(0)
    phi, y = _problem(n=40)
    head = _fixed_noise_head(3, 40)
    params = [p for p in head.parameters() if p.requires_grad]
    adam = torch.optim.Adam(params, lr=0.05)
    for _ in range(100):
        adam.zero_grad()
        head.loss(phi, y).total.backward()
        adam.step()
    lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=150, tolerance_grad=1e-12, tolerance_change=1e-15,
                              line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = head.loss(phi, y).total
        loss.backward()
        return loss

    lbfgs.step(closure)
    mean, cov = _exact_posterior(phi, y)
    with torch.no_grad():
        got_cov = head.posterior.covariance()[0]
        torch.testing.assert_close(head.posterior.mean[0], mean, atol=1e-4, rtol=0)
        assert float(torch.linalg.norm(got_cov - cov) / torch.linalg.norm(cov)) < 1e-4
    assert _elbo(head, phi, y) == pytest.approx(_log_evidence(phi, y), rel=1e-8)


@pytest.mark.parametrize("covariance", ["diagonal", "dense", "lowrank"])
def test_closed_form_expected_log_likelihood_matches_monte_carlo(covariance: str) -> None:
    gen = torch.Generator().manual_seed(1)
    d, k, b, n = 5, 2, 4, 100_000
    cfg = VBLLRegressionConfig(covariance=covariance, lowrank_rank=2, noise_init=0.6, n_train=10)
    head = VBLLRegressionHead(d, k, cfg).double()
    with torch.no_grad():
        head.posterior.log_scale.add_(math.log(2.0))  # make the weight variance matter
        head.noise_log_std.copy_(torch.tensor([-0.5, 0.2]))
        if covariance == "dense":
            head.posterior.tril.normal_(0.0, 0.3, generator=gen)
        if covariance == "lowrank":
            head.posterior.factor.normal_(0.0, 0.3, generator=gen)
    phi = torch.randn(b, d, generator=gen, dtype=torch.float64)
    y = torch.randn(b, k, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        closed = head.expected_log_likelihood(phi, y)
        weights = head.posterior.sample(n, generator=gen)  # (n, k, d)
        preds = torch.einsum("bd,nkd->nbk", phi, weights)
        noise = head.noise_var()
        samples = (-0.5 * (math.log(2 * math.pi) + noise.log() + (y - preds) ** 2 / noise)).sum(-1)
    mc, se = samples.mean(0), samples.std(0) / math.sqrt(n)
    assert torch.all((closed - mc).abs() <= 4 * se), (closed, mc, se)


def test_multi_output_loss_follows_the_formula() -> None:
    """k > 1: each output's trace term is divided by its own σ_j² (vbll uses Σ_i σ_i⁻² for all)."""
    gen = torch.Generator().manual_seed(2)
    head = VBLLRegressionHead(4, 3, VBLLRegressionConfig(covariance="diagonal", n_train=50)).double()
    with torch.no_grad():
        head.noise_log_std.copy_(torch.tensor([-1.0, 0.0, 0.5]))
    phi = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        var = head.posterior.scale_diag() ** 2  # (k, d)
        mean = phi @ head.posterior.mean.T
        s2 = head.noise_var()
        ell = (-0.5 * math.log(2 * math.pi) - 0.5 * s2.log() - 0.5 * (y - mean) ** 2 / s2
               - 0.5 * (phi**2 @ var.T) / s2).sum(-1)
        prior = head.prior_var
        kl = 0.5 * ((var.sum(-1) + (head.posterior.mean**2).sum(-1)) / prior - 4 + 4 * math.log(prior)
                    - var.log().sum(-1)).sum()
        dof = (1.0 + 3 + 1) / 2
        noise_term = -(dof * (-s2.log()).sum() - 0.5 * 1e-2 * (1 / s2).sum())
        expected = -ell.mean() + kl / 50 + noise_term / 50
        terms = head.loss(phi, y)
    torch.testing.assert_close(terms.total, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.total, sum(terms.parts.values()), rtol=0, atol=0)


def test_predictive_is_closed_form_and_positive() -> None:
    head = VBLLRegressionHead(6, 2, VBLLRegressionConfig(covariance="lowrank", lowrank_rank=2))
    phi = torch.randn(8, 6)
    pred = head.predict(phi)
    with torch.no_grad():
        cov = head.posterior.covariance()
        quad = torch.einsum("bi,kij,bj->bk", phi, cov, phi)
        torch.testing.assert_close(pred.var, quad + head.noise_var(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(pred.mean, phi @ head.posterior.mean.T)
    assert torch.all(pred.var > 0)
    y = torch.randn(8, 2)
    assert pred.nll(y).shape == (8,)


def test_bf16_features_are_upcast() -> None:
    head = VBLLRegressionHead(6, 1, VBLLRegressionConfig(n_train=10))
    phi = torch.randn(4, 6)
    low = phi.to(torch.bfloat16)
    terms = head.loss(low, torch.randn(4))
    assert terms.total.dtype == torch.float32
    torch.testing.assert_close(head.predict(low).mean, head.predict(low.float()).mean)


def test_target_validation() -> None:
    head = VBLLRegressionHead(3, 2, VBLLRegressionConfig(n_train=10))
    phi = torch.randn(4, 3)
    with pytest.raises(TypeError, match="floating point"):
        head.loss(phi, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        head.loss(phi, torch.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        head.loss(phi, torch.full((4, 2), float("nan")))
    single = VBLLRegressionHead(3, 1, VBLLRegressionConfig(n_train=10))
    assert torch.isfinite(single.loss(phi, torch.zeros(4)).total)
    assert torch.isfinite(single.loss(phi, torch.zeros(4, 1)).total)
    with pytest.raises(ValueError, match="n_train"):
        VBLLRegressionHead(3, 1).loss(phi, torch.zeros(4))


def test_init_from_linear() -> None:
    lin = torch.nn.Linear(5, 2)
    head = VBLLRegressionHead.from_linear(lin)
    assert head.config.bias
    phi = torch.randn(3, 5)
    torch.testing.assert_close(head.predict(phi).mean, lin(phi).detach())
    nobias = VBLLRegressionHead(5, 2)
    with pytest.raises(ValueError, match="bias=True"):
        nobias.init_from_linear(lin)
    nobias.init_from_linear(lin.weight)
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        nobias.init_from_linear(torch.zeros(5, 2))
