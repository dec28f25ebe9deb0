"""VBLL classification with one covariance S shared by all classes (covariance_sharing="shared"):
closed-form KL, tie to the per-class head and to vbll on tied parameters, the Jensen bound
against Monte Carlo and at S → 0, normalised predictions, and the parameter count."""

from __future__ import annotations

import math

import pytest
import torch
import vbll
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal, Normal, kl_divergence

from bayeshead.heads.covariance import GaussianRows
from bayeshead.heads.vbll_classification import VBLLClassificationConfig, VBLLClassificationHead

KINDS = ["diagonal", "dense", "lowrank"]
N_TRAIN = 64


@torch.no_grad()
def randomise(post: GaussianRows, seed: int) -> GaussianRows:
    gen = torch.Generator().manual_seed(seed)
    for param in post.parameters():
        param.copy_(0.5 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return post


def shared_head(d: int, c: int, kind: str = "dense", seed: int = 0, **cfg) -> VBLLClassificationHead:
    config = VBLLClassificationConfig(covariance=kind, lowrank_rank=2, covariance_sharing="shared",
                                      n_train=N_TRAIN, **cfg)
    head = VBLLClassificationHead(d, c, config).double()
    randomise(head.posterior, seed)
    return head


def features(b: int, d: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=gen, dtype=torch.float64), torch.randint(0, 3, (b,), generator=gen)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(KINDS), rows=st.integers(1, 4), dim=st.integers(1, 6),
       prior=st.floats(1e-2, 10.0), seed=st.integers(0, 2**16))
def test_kl_is_the_sum_of_per_class_kls_with_one_covariance(kind, rows, dim, prior, seed):
    post = randomise(GaussianRows(rows, dim, kind, rank=1 if kind == "lowrank" else None, shared=True).double(), seed)
    zeros = torch.zeros(rows, dim, dtype=torch.float64)
    with torch.no_grad():
        if kind == "diagonal":
            q = Normal(post.mean, post.scale_diag().expand(rows, dim))
            expected = kl_divergence(q, Normal(zeros, torch.full_like(zeros, math.sqrt(prior)))).sum()
        else:
            if kind == "dense":
                q = MultivariateNormal(post.mean, scale_tril=post.cholesky().expand(rows, dim, dim))
            else:
                q = LowRankMultivariateNormal(post.mean, post.factor.expand(rows, dim, 1),
                                              post.scale_diag().pow(2).expand(rows, dim))
            eye = torch.eye(dim, dtype=torch.float64).expand(rows, dim, dim)
            expected = kl_divergence(q, MultivariateNormal(zeros, covariance_matrix=prior * eye)).sum()
        got = post.kl(prior)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_shared_rows_match_dense_algebra_and_sampling(kind):
    post = randomise(GaussianRows(3, 5, kind, rank=2 if kind == "lowrank" else None, shared=True).double(), 4)
    phi = torch.randn(6, 5, dtype=torch.float64)
    weights = torch.rand(5, dtype=torch.float64) + 0.1
    with torch.no_grad():
        cov = post.covariance()
        assert cov.shape == (3, 5, 5) and torch.equal(cov[0], cov[2])
        torch.testing.assert_close(post.quadratic(phi), torch.einsum("bi,rij,bj->br", phi, cov, phi))
        torch.testing.assert_close(post.weighted_trace(weights), (torch.diagonal(cov, dim1=-2, dim2=-1) * weights).sum(-1))
        torch.testing.assert_close(post.logdet(), torch.linalg.slogdet(cov)[1])
        samples = post.sample(40_000, generator=torch.Generator().manual_seed(0))
        centered = samples - post.mean
        emp = torch.einsum("nri,nrj->rij", centered, centered) / samples.shape[0]
        cross = torch.einsum("ni,nj->ij", centered[:, 0], centered[:, 1]) / samples.shape[0]
    assert samples.shape == (40_000, 3, 5)
    torch.testing.assert_close(emp, cov, atol=0.15 * float(cov.abs().max()), rtol=0)
    assert float(cross.abs().max()) < 0.15 * float(cov.abs().max())  # rows stay independent


@pytest.mark.parametrize("kind", KINDS)
def test_shared_head_equals_per_class_head_with_tied_covariances(kind):
    d, c = 6, 3
    shared = shared_head(d, c, kind, bias=True)
    per_class = VBLLClassificationHead(d, c, shared.config.model_copy(update={"covariance_sharing": "per_class"})).double()
    with torch.no_grad():
        for name, param in per_class.named_parameters():
            param.copy_(dict(shared.named_parameters())[name].expand_as(param))
    x, y = features(10, d)
    torch.testing.assert_close(shared.loss(x, y).total, per_class.loss(x, y).total, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(shared.predict(x).probs, per_class.predict(x).probs, rtol=1e-12, atol=1e-12)


def test_matches_vbll_dense_on_tied_parameters():
    """vbll 0.4.9 has no shared covariance; with its per-class factors all set to one S, its
    DiscClassification loss and predictive must equal the shared head's (vbll's KL omits −d/2
    per class, hence the constant)."""
    d, c = 7, 4
    torch.manual_seed(0)
    ref = vbll.DiscClassification(d, c, 1.0 / N_TRAIN, parameterization="dense", prior_scale=1.3,
                                  wishart_scale=0.7, dof=2.0).double()
    head = shared_head(d, c, "dense", prior_scale=1.3, prior_width_scaling="2/d", wishart_scale=0.7, wishart_dof=2.0)
    with torch.no_grad():
        ref.W_mean.copy_(head.posterior.mean)
        ref.W_logdiag.copy_(head.posterior.log_scale.expand(c, d))
        ref.W_offdiag.copy_(head.posterior.tril.expand(c, d, d))
        ref.noise_logdiag.copy_(head.noise_log_std)
    x, y = features(16, d)
    y = y % c
    torch.testing.assert_close(head.loss(x, y).total + 0.5 * c * d / N_TRAIN, ref(x).train_loss_fn(y), rtol=1e-10, atol=1e-12)
    torch.manual_seed(123)
    ref_probs = ref.predictive(x, n_samples=64)
    ours = head.predict(x, method="mc", n_samples=64, generator=torch.Generator().manual_seed(123))
    torch.testing.assert_close(ours.probs, ref_probs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_jensen_bound_is_below_a_monte_carlo_estimate(kind):
    d, c, n = 5, 3, 100_000
    head = shared_head(d, c, kind, seed=3)
    x, y = features(4, d, seed=2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = head.posterior.sample(n, generator=gen)  # (n, C, d): joint draws of the last layer
        noise = torch.randn(n, 1, c, generator=gen, dtype=torch.float64) * head.noise_log_std.exp()
        logits = torch.einsum("ncd,bd->nbc", w, x) + noise
        log_lik = torch.log_softmax(logits, -1).gather(-1, y.expand(n, -1).unsqueeze(-1)).squeeze(-1)
        mc, se = log_lik.mean(0), log_lik.std(0) / math.sqrt(n)
        bound = head.jensen_bound(x, y)
    assert torch.all(bound <= mc + 4 * se), (bound, mc, se)
    assert torch.all(mc - bound > 4 * se)  # strictly below: the covariance is far from 0


def test_jensen_bound_is_exact_as_the_covariance_vanishes():
    d, c = 6, 3
    head = shared_head(d, c, "dense")
    x, y = features(8, d)
    with torch.no_grad():
        head.posterior.tril.zero_()
        head.posterior.log_scale.fill_(-30.0)
        head.noise_log_std.fill_(-30.0)
        exact = torch.log_softmax(x @ head.posterior.mean.T, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(head.jensen_bound(x, y), exact, rtol=0, atol=1e-12)
        # and the gap grows with S
        head.posterior.log_scale.fill_(0.0)
        assert torch.all(head.jensen_bound(x, y) < exact - 1e-3)


@pytest.mark.parametrize("method", ["probit", "mc"])
@pytest.mark.parametrize("kind", KINDS)
def test_predictions_are_normalised(kind, method):
    head = shared_head(9, 4, kind)
    x, _ = features(7, 9)
    pred = head.predict(x, method=method, n_samples=32, generator=torch.Generator().manual_seed(0))
    assert pred.probs.shape == (7, 4) and torch.all(pred.probs >= 0)
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(7, dtype=torch.float64))


def test_shared_dense_has_d_squared_covariance_numbers_and_trains():
    d, c = 16, 5
    per_class = VBLLClassificationHead(d, c, VBLLClassificationConfig(covariance="dense", n_train=N_TRAIN))
    shared = VBLLClassificationHead(d, c, VBLLClassificationConfig(covariance="dense", covariance_sharing="shared", n_train=N_TRAIN))
    assert shared.posterior.tril.shape == (1, d, d) and per_class.posterior.tril.shape == (c, d, d)
    count = lambda h: sum(p.numel() for p in h.parameters())  # noqa: E731
    assert count(per_class) - count(shared) == (c - 1) * (d * d + d)
    x, y = torch.randn(12, d), torch.randint(0, c, (12,))
    shared.loss(x, y).total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in shared.parameters() if p.requires_grad)
    assert "covariance_sharing='shared'" in repr(shared)


def test_laplace_covariances_switch_a_shared_head_to_per_class():
    head = shared_head(4, 3, "dense")
    mean = head.posterior.mean.detach().clone()
    covs = torch.stack([torch.eye(4, dtype=torch.float64) * (i + 1) for i in range(3)])
    head.set_row_covariances(covs)
    assert not head.posterior.shared and head.config.covariance_sharing == "per_class"
    torch.testing.assert_close(head.posterior.covariance(), covs)
    torch.testing.assert_close(head.posterior.mean, mean)
    with pytest.raises(ValueError, match=r"expected covariances of shape \(1, 4, 4\) \(one shared covariance\)"):
        GaussianRows(3, 4, "dense", shared=True).set_dense_covariance(covs.float())


def test_bad_sharing_value_is_rejected():
    with pytest.raises(ValidationError, match="covariance_sharing"):
        VBLLClassificationConfig(covariance_sharing="per_row")
