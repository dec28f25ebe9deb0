"""Discriminative and generative VBLL classification heads: bounds, predictives, validation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.heads.deterministic import DeterministicHead
from bayeshead.heads.vbll_classification import VBLLClassificationConfig, VBLLClassificationHead
from bayeshead.heads.vbll_generative import VBLLGenerativeConfig, VBLLGenerativeHead
from bayeshead.registry import HEADS

KINDS = ["diagonal", "dense", "lowrank"]


def _disc(kind: str, d: int = 5, c: int = 4, **kw: object) -> VBLLClassificationHead:
    cfg = VBLLClassificationConfig(covariance=kind, lowrank_rank=2, n_train=20, **kw)
    return VBLLClassificationHead(d, c, cfg).double()


@torch.no_grad()
def _spread(head: VBLLClassificationHead | VBLLGenerativeHead, gen: torch.Generator, scale: float) -> None:
    post = head.posterior
    post.mean.normal_(0.0, 1.0, generator=gen)
    post.log_scale.normal_(math.log(scale), 0.3, generator=gen)
    if post.kind == "dense":
        post.tril.normal_(0.0, scale / 2, generator=gen)
    if post.kind == "lowrank":
        post.factor.normal_(0.0, scale, generator=gen)


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    scale=st.floats(0.01, 1.0),
    noise=st.floats(0.01, 2.0),
    seed=st.integers(0, 2**16),
)
def test_jensen_bound_lies_below_monte_carlo(kind: str, scale: float, noise: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    head = _disc(kind, noise_init=noise)
    _spread(head, gen, scale)
    phi = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=gen)
    n = 20_000
    with torch.no_grad():
        bound = head.jensen_bound(phi, y)
        mean, var = head.logit_moments(phi)
        z = mean + var.sqrt() * torch.randn(n, *mean.shape, generator=gen, dtype=torch.float64)
        samples = torch.log_softmax(z, -1).gather(-1, y.expand(n, -1).unsqueeze(-1)).squeeze(-1)
    mc, se = samples.mean(0), samples.std(0) / math.sqrt(n)
    assert torch.all(bound <= mc + 4 * se + 1e-12), (bound, mc, se)


@pytest.mark.parametrize("kind", KINDS)
def test_jensen_bound_is_exact_without_variance(kind: str) -> None:
    head = _disc(kind)
    with torch.no_grad():
        head.posterior.log_scale.fill_(-math.inf)
        head.noise_log_std.fill_(-math.inf)
        if kind == "lowrank":
            head.posterior.factor.zero_()
    phi = torch.randn(7, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (7,))
    with torch.no_grad():
        expected = torch.log_softmax(phi @ head.posterior.mean.T, -1).gather(-1, y[:, None]).squeeze(-1)
        torch.testing.assert_close(head.jensen_bound(phi, y), expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_covariance_predicts_as_the_deterministic_head(kind: str) -> None:
    det = DeterministicHead(5, 3)
    head = VBLLClassificationHead.from_linear(det, config=VBLLClassificationConfig(covariance=kind, lowrank_rank=2))
    with torch.no_grad():
        head.posterior.log_scale.fill_(-math.inf)
        head.noise_log_std.fill_(-math.inf)
        if kind == "lowrank":
            head.posterior.factor.zero_()
    phi = torch.randn(8, 5)
    want = det.predict(phi)
    got = head.predict(phi)
    assert torch.equal(got.probs, want.probs) and torch.equal(got.log_probs, want.log_probs)
    mc = head.predict(phi, method="mc", n_samples=3)
    torch.testing.assert_close(mc.probs, want.probs)


@pytest.mark.parametrize("kind", KINDS)
def test_predictives_are_distributions_and_seedable(kind: str) -> None:
    head = _disc(kind)
    phi = torch.randn(9, 5, dtype=torch.float64)
    probit = head.predict(phi, n_samples=7)  # probit (the default) ignores n_samples
    assert probit.samples is None
    assert torch.equal(probit.probs, head.predict(phi).probs)
    mc1 = head.predict(phi, method="mc", n_samples=50, generator=torch.Generator().manual_seed(3))
    mc2 = head.predict(phi, method="mc", n_samples=50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mc1.probs, mc2.probs)
    assert mc1.samples is not None and mc1.samples.shape == (50, 9, 4)
    for pred in (probit, mc1):
        torch.testing.assert_close(pred.probs.sum(-1), torch.ones(9, dtype=torch.float64))
        assert torch.all(pred.probs >= 0)
    assert torch.all(mc1.mutual_information() >= 0)
    mc_cfg = _disc(kind, predictive="mc", n_samples=11)
    assert mc_cfg.predict(phi).samples.shape[0] == 11


def test_probit_tracks_monte_carlo() -> None:
    head = _disc("dense")
    phi = torch.randn(50, 5, dtype=torch.float64)
    mc = head.predict(phi, method="mc", n_samples=20_000, generator=torch.Generator().manual_seed(0))
    err = (head.predict(phi).probs - mc.probs).detach().abs()
    assert float(err.max()) < 0.08 and float(err.mean()) < 0.02  # an approximation, not exact


def test_loss_parts_and_gradients() -> None:
    head = _disc("lowrank")
    phi, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 4, (6,))
    terms = head.loss(phi, y)
    assert set(terms.parts) == {"nll_bound", "kl", "noise_prior"}
    torch.testing.assert_close(terms.total, sum(terms.parts.values()))
    torch.testing.assert_close(terms["kl"], head.kl() / 20)
    terms.total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    no_prior = _disc("diagonal", noise_prior=False, learn_noise=False)
    assert "noise_prior" not in no_prior.loss(phi, y)
    assert not no_prior.noise_log_std.requires_grad


@pytest.mark.parametrize("name", ["vbll_classification", "vbll_generative_classification"])
def test_validation_errors(name: str) -> None:
    head = HEADS.create(name, 4, 3, HEADS.config_class(name)(n_train=5))
    phi = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        head.loss(torch.randn(5, 6), torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        head.loss(phi, torch.zeros(5))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        head.loss(phi, torch.zeros(5, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        head.loss(phi, torch.tensor([0, 1, 2, 3, 0]))
    bad = phi.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="rows \\[2\\]"):
        head.predict(bad)
    low = head.loss(phi.to(torch.bfloat16), torch.zeros(5, dtype=torch.long))
    assert low.total.dtype == torch.float32 and torch.isfinite(low.total)
    with pytest.raises(ValueError):
        HEADS.config_class(name)(covarance="dense")  # extra="forbid" catches typos


def test_init_from_linear_rows_and_bias_rules() -> None:
    rows = torch.randn(3, 4)  # e.g. LM-head rows of the answer tokens
    head = VBLLClassificationHead(4, 3).init_from_linear(rows)
    torch.testing.assert_close(head.posterior.mean.detach(), rows)
    with pytest.raises(ValueError, match="bias=True"):
        VBLLClassificationHead(4, 3).init_from_linear(DeterministicHead(4, 3))
    with pytest.raises(TypeError):
        VBLLClassificationHead(4, 3).init_from_linear([[1.0]])


# -- generative ------------------------------------------------------------------------------
def _gen(kind: str, d: int = 4, c: int = 3) -> VBLLGenerativeHead:
    cfg = VBLLGenerativeConfig(covariance=kind, lowrank_rank=2, n_train=30)
    return VBLLGenerativeHead(d, c, cfg).double()


@pytest.mark.parametrize("kind", KINDS)
def test_generative_logits_are_marginal_likelihoods(kind: str) -> None:
    gen = torch.Generator().manual_seed(5)
    head = _gen(kind)
    _spread(head, gen, 0.5)
    phi = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        cov = head.posterior.covariance() + torch.diag(head.noise_var())
        want = torch.distributions.MultivariateNormal(head.posterior.mean, cov).log_prob(phi[:, None, :])
        torch.testing.assert_close(head.logits(phi), want)
    pred = head.predict(phi)
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(6, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["dense", "lowrank"])
def test_generative_covariances_agree_with_diagonal_on_diagonal_moments(kind: str) -> None:
    gen = torch.Generator().manual_seed(6)
    diag, other = _gen("diagonal"), _gen(kind)
    _spread(diag, gen, 0.5)
    with torch.no_grad():
        other.posterior.mean.copy_(diag.posterior.mean)
        other.posterior.log_scale.copy_(diag.posterior.log_scale)
        if kind == "dense":
            other.posterior.tril.zero_()
        else:
            other.posterior.factor.zero_()
        other.noise_log_std.copy_(diag.noise_log_std)
    phi, y = torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (6,), generator=gen)
    torch.testing.assert_close(other.loss(phi, y).total, diag.loss(phi, y).total)
    torch.testing.assert_close(other.predict(phi).probs, diag.predict(phi).probs)


@pytest.mark.parametrize("kind", KINDS)
def test_generative_bound_lies_below_monte_carlo(kind: str) -> None:
    """The bound ≤ E_q[log p(y | φ, μ)] with p(y|φ,μ) = N(φ|μ_y,Σ)/Σ_c N(φ|μ_c,Σ), by Monte Carlo."""
    gen = torch.Generator().manual_seed(7)
    head = _gen(kind)
    _spread(head, gen, 0.7)
    phi = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (5,), generator=gen)
    n = 20_000
    with torch.no_grad():
        bound = head.jensen_bound(phi, y)
        mus = head.posterior.sample(n, generator=gen)  # (n, C, d)
        var = head.noise_var()
        loglik = -0.5 * (math.log(2 * math.pi) + var.log() + (phi[None, :, None, :] - mus[:, None]) ** 2 / var).sum(-1)
        samples = torch.log_softmax(loglik, -1).gather(-1, y.expand(n, -1).unsqueeze(-1)).squeeze(-1)
    mc, se = samples.mean(0), samples.std(0) / math.sqrt(n)
    assert torch.all(bound <= mc + 4 * se), (bound, mc, se)


def test_generative_init_from_linear_reproduces_the_linear_part() -> None:
    w = torch.randn(3, 4, dtype=torch.float64)
    head = _gen("diagonal")
    with torch.no_grad():
        head.noise_log_std.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    head.init_from_linear(w)
    with torch.no_grad():
        head.posterior.log_scale.fill_(-math.inf)
        phi = torch.randn(5, 4, dtype=torch.float64)
        sigma = head.noise_var()
        want = phi @ w.T - 0.5 * (w**2 * sigma).sum(-1)
        got = head.logits(phi)
    torch.testing.assert_close(got - got[:, :1], want - want[:, :1])
    with pytest.warns(UserWarning, match="bias"):
        head.init_from_linear(w, torch.ones(3, dtype=torch.float64))
