"""The empirical-Bayes prior of the VBLL classification head (prior_scale_rule="evidence")."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bayeshead.config import TrainingConfig
from bayeshead.heads.vbll_classification import VBLLClassificationConfig, VBLLClassificationHead
from bayeshead.heads.vbll_prior import (
    evidence_prior_var,
    feature_norm_prior_var,
    laplace_log_evidence,
    prior_logit_std,
)
from bayeshead.registry import HEADS
from bayeshead.training.feature_fit import fit_head_on_features


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """These problems are tiny: one thread avoids oversubscribing a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problem(n: int = 60, d: int = 4, c: int = 3, margin: float = 2.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features with an offset (like pooled transformer features) and labels from a noisy linear rule."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) + 0.5
    w = torch.randn(c, d, generator=gen, dtype=torch.float64)
    logits = margin * x @ w.T
    y = torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(-1)
    return x, y


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 100))
def test_feature_norm_prior_gives_logit_std_one_at_any_scale(scale: float, seed: int) -> None:
    x = torch.randn(16, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    s = feature_norm_prior_var(x)
    assert prior_logit_std(s, x) == pytest.approx(1.0, rel=1e-9)
    assert feature_norm_prior_var(10 * x) == pytest.approx(s / 100, rel=1e-9)


def test_zero_features_are_refused_with_a_fix() -> None:
    with pytest.raises(ValueError, match="every feature vector is zero.*prior_scale_rule='fixed'"):
        feature_norm_prior_var(torch.zeros(4, 3))


def test_evidence_choice_is_invariant_to_rescaling_the_features() -> None:
    x, y = _problem()
    s = evidence_prior_var(x, y, 3)
    s10 = evidence_prior_var(10 * x, y, 3)
    assert s10 == pytest.approx(s / 100, rel=5e-3)
    assert prior_logit_std(s10, 10 * x) == pytest.approx(prior_logit_std(s, x), rel=5e-3)


def test_evidence_maximiser_matches_a_grid_search() -> None:
    x, y = _problem()
    s = evidence_prior_var(x, y, 3, tol=1e-4)
    mean_sq = float(x.pow(2).sum(-1).mean())
    grid = torch.logspace(math.log10(0.05), math.log10(200.0), 121).tolist()  # κ, spacing 7 % in κ
    values = [laplace_log_evidence(x, y, 3, k * k / mean_sq)[0] for k in grid]
    best = grid[max(range(len(grid)), key=values.__getitem__)]
    assert 0.1 < best < 100  # an interior maximum, so the comparison is not about the interval's ends
    assert math.sqrt(s * mean_sq) == pytest.approx(best, rel=0.04)
    # and the golden-section optimum scores at least as well as every grid point
    assert laplace_log_evidence(x, y, 3, s)[0] >= max(values) - 1e-6


def test_laplace_evidence_matches_the_primal_form_in_the_dual_branch() -> None:
    # d = 30 > n: the dual (N·C)² determinant is used; compare with the (C·d)² primal one
    x, y = _problem(n=8, d=30, c=2)
    s = 0.3
    value, weight = laplace_log_evidence(x, y, 2, s)
    probs = (x @ weight.T).softmax(-1)
    curv = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
    hess = torch.einsum("nab,ni,nj->aibj", curv, x, x).reshape(60, 60) + torch.eye(60, dtype=x.dtype) / s
    log_lik = -torch.nn.functional.cross_entropy(x @ weight.T, y, reduction="sum")
    primal = log_lik - weight.pow(2).sum() / (2 * s) - 30 * math.log(s) - 0.5 * torch.linalg.slogdet(hess)[1]
    assert value == pytest.approx(float(primal), rel=1e-8, abs=1e-8)


def test_laplace_evidence_matches_quadrature_on_one_weight() -> None:
    # C = 2 with the second row's weight 0 is not the model; instead check the Laplace value against
    # numerical integration on a 1-d problem, where it must be close for n large (posterior ~ Gaussian)
    x, y = _problem(n=200, d=1, c=2, margin=1.0, seed=3)
    s = 2.0
    value, _ = laplace_log_evidence(x, y, 2, s)
    grid = torch.linspace(-8, 8, 401, dtype=torch.float64)
    w1, w2 = torch.meshgrid(grid, grid, indexing="ij")
    weights = torch.stack([w1.flatten(), w2.flatten()], -1)  # (G, 2): one weight per class
    logits = x[:, 0][None, :, None] * weights[:, None, :]  # (G, n, 2)
    log_lik = logits.log_softmax(-1).gather(-1, y[None, :, None].expand(len(weights), -1, 1)).sum((1, 2))
    log_prior = -weights.pow(2).sum(-1) / (2 * s) - math.log(2 * math.pi * s)
    step = float(grid[1] - grid[0])
    exact = float(torch.logsumexp(log_lik + log_prior, 0)) + 2 * math.log(step)
    assert value == pytest.approx(exact, abs=0.05)


def test_evidence_prefers_a_wider_prior_on_an_easier_task() -> None:
    x_easy, y_easy = _problem(n=200, margin=6.0)
    x_hard, y_hard = _problem(n=200, margin=0.5)
    easy = prior_logit_std(evidence_prior_var(x_easy, y_easy, 3), x_easy)
    hard = prior_logit_std(evidence_prior_var(x_hard, y_hard, 3), x_hard)
    assert easy > 2 * hard


def test_config_validates_and_serialises() -> None:
    cfg = VBLLClassificationConfig(prior_scale_rule="evidence", evidence_examples=64)
    again = VBLLClassificationConfig.model_validate(json.loads(cfg.model_dump_json()))
    assert again == cfg
    with pytest.raises(ValidationError, match="prior_scale_rule"):
        VBLLClassificationConfig(prior_scale_rule="auto")
    with pytest.raises(ValidationError, match="evidence_examples"):
        VBLLClassificationConfig(prior_scale_rule="evidence", evidence_examples=0)
    assert VBLLClassificationConfig().prior_scale_rule == "fixed"


def test_fixed_rule_has_no_extra_state() -> None:
    head = VBLLClassificationHead(4, 3, VBLLClassificationConfig())
    assert not any(k.startswith("eb_") for k in head.state_dict())
    assert head.prior_var == pytest.approx(2.0 / 4)


@pytest.mark.parametrize("covariance", ["diagonal", "dense"])
def test_trainer_sets_the_evidence_prior_and_it_survives_save_and_load(covariance: str) -> None:
    x, y = _problem(n=96, d=6, c=3, margin=3.0, seed=1)
    x = x.float() * 40.0  # LLM-like norms: the rule must not care
    cfg = {"kind": "vbll_classification", "covariance": covariance, "prior_scale_rule": "evidence"}
    training = TrainingConfig(epochs=2, batch_size=16, head_steps=2, head_lr=1e-2, progress=False)
    fit = fit_head_on_features(cfg, x, y, training=training)
    head = fit.head
    assert int(head.eb_stage) == 2
    # every training example once (n_train < evidence_examples), although each batch is seen twice
    assert head.prior_var == pytest.approx(evidence_prior_var(x, y, 3), rel=1e-3)
    assert head.kl().item() == pytest.approx(head.posterior.kl(head.prior_var).item(), rel=1e-6)
    # rebuilt from its JSON config and state: same prior, same predictions, and no second choice
    config = HEADS.get("vbll_classification").Config.model_validate(json.loads(head.config.model_dump_json()))
    loaded = VBLLClassificationHead(6, 3, config)
    loaded.load_state_dict(head.state_dict())
    assert loaded.prior_var == head.prior_var
    head.eval()
    loaded.eval()
    torch.testing.assert_close(loaded.predict(x).probs, head.predict(x).probs)
    loaded.train()
    before = loaded.prior_var
    loaded.loss(x[:16] * 3, y[:16]).total.backward()
    assert loaded.prior_var == before


def test_prior_is_chosen_from_the_first_examples_and_training_starts_at_logit_scale_one() -> None:
    x, y = _problem(n=64, d=5, c=3, margin=4.0)
    head = VBLLClassificationHead(5, 3, VBLLClassificationConfig(prior_scale_rule="evidence", evidence_examples=32, n_train=64))
    head.double().train()
    head.loss(x[:16], y[:16])
    assert int(head.eb_stage) == 1
    assert prior_logit_std(head.prior_var, x[:16]) == pytest.approx(1.0, rel=1e-6)
    cov = head.posterior.covariance()
    torch.testing.assert_close(cov, head.prior_var * torch.eye(5, dtype=cov.dtype).expand(3, 5, 5))
    head.loss(x[:16], y[:16])  # the same batch again (another head step): not counted twice
    assert int(head.eb_stage) == 1
    head.loss(x[16:32], y[16:32])
    assert int(head.eb_stage) == 2
    assert head.prior_var == pytest.approx(evidence_prior_var(x[:32], y[:32], 3), rel=1e-9)
    with torch.no_grad():  # evaluation never changes the prior
        head.loss(x[32:], y[32:])
    assert head.prior_var == pytest.approx(evidence_prior_var(x[:32], y[:32], 3), rel=1e-9)
