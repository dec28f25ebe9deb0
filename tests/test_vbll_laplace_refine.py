"""The "+LA" variant: a trained VBLL classification head refined with Laplace covariances."""

from __future__ import annotations

import pytest
import torch

from bayeshead.heads.laplace_refine import laplace_row_covariances, refine_with_laplace
from bayeshead.heads.vbll_classification import VBLLClassificationConfig, VBLLClassificationHead


def _trained(covariance: str) -> tuple[VBLLClassificationHead, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    torch.manual_seed(0)
    head = VBLLClassificationHead(6, 3, VBLLClassificationConfig(covariance=covariance, n_train=120))
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        head.loss(x, y).total.backward()
        opt.step()
    return head, x, y


def test_refinement_sets_the_laplace_covariance_at_the_mean_and_keeps_the_mean():
    head, x, y = _trained("dense")
    mean_before = head.posterior.mean.detach().clone()
    expected = laplace_row_covariances(mean_before, None, x, prior_precision=2.0)
    refine_with_laplace(head, x, y, prior_precision=2.0)
    torch.testing.assert_close(head.posterior.covariance().double(), expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(head.posterior.mean, mean_before)
    probs = head.predict(x).probs
    torch.testing.assert_close(probs.sum(-1), torch.ones(120))
    assert torch.isfinite(probs).all()


@pytest.mark.parametrize("covariance", ["diagonal", "lowrank"])
def test_refinement_of_a_non_dense_posterior_switches_it_to_dense(covariance):
    head, x, y = _trained(covariance)
    mean_before = head.posterior.mean.detach().clone()
    expected = laplace_row_covariances(mean_before, None, x, prior_precision=1.0)
    refine_with_laplace(head, x, y, prior_precision=1.0)
    assert head.posterior.kind == "dense" and head.config.covariance == "dense"
    assert torch.equal(head.posterior.mean, mean_before)
    torch.testing.assert_close(head.posterior.covariance().double(), expected, rtol=1e-4, atol=1e-6)
    # the updated config rebuilds a head with the same state (save/load works)
    again = VBLLClassificationHead(6, 3, head.config)
    again.load_state_dict(head.state_dict())
    torch.testing.assert_close(again.predict(x).probs, head.predict(x).probs)
