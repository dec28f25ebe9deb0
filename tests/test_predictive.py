"""Predictives: normalisation, NLL from log-probabilities, entropy and mutual information."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeshead.types import CategoricalPredictive, GaussianPredictive, LossTerms

shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(2, 6), st.integers(0, 10_000))


@settings(max_examples=50, deadline=None)
@given(shapes, st.floats(0.1, 60.0))
def test_categorical_from_samples_is_the_mean_softmax(shape, scale):
    s, b, c, seed = shape
    logits = torch.randn(s, b, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    pred = CategoricalPredictive.from_sample_logits(logits)
    torch.testing.assert_close(pred.probs, torch.softmax(logits, -1).mean(0))
    torch.testing.assert_close(pred.probs.sum(-1), torch.ones(b, dtype=torch.float64))
    y = torch.randint(0, c, (b,), generator=torch.Generator().manual_seed(seed))
    nll = pred.nll(y)
    assert torch.isfinite(nll).all() and (nll >= 0).all()  # log-probs, never log(0)
    ent = pred.entropy()
    mi = pred.mutual_information()
    assert (ent <= math.log(c) + 1e-9).all() and (ent >= -1e-12).all()
    assert (mi >= 0).all() and (mi <= ent + 1e-9).all()
    expected_mi = torch.distributions.Categorical(probs=pred.probs).entropy() - torch.distributions.Categorical(
        probs=torch.softmax(logits, -1)
    ).entropy().mean(0)
    torch.testing.assert_close(mi, expected_mi.clamp_min(0), atol=1e-9, rtol=1e-7)


def test_nll_survives_probabilities_that_underflow():
    logits = torch.tensor([[0.0, -2000.0]])
    pred = CategoricalPredictive.from_logits(logits)
    assert pred.probs[0, 1] == 0.0
    assert pred.nll(torch.tensor([1])).item() == pytest.approx(2000.0)
    assert torch.isfinite(pred.entropy()).all()


def test_gaussian_nll_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, var, y = torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.1, torch.randn(4, 3, generator=g)
    pred = GaussianPredictive(mean, var)
    normal = torch.distributions.Normal(mean, var.sqrt())
    torch.testing.assert_close(pred.nll(y), -normal.log_prob(y).sum(-1))
    torch.testing.assert_close(pred.entropy(), normal.entropy().sum(-1))
    with pytest.raises(ValueError, match="one shape"):
        GaussianPredictive(mean, var[:, :2])


def test_shape_errors_and_loss_terms():
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        CategoricalPredictive(torch.ones(3))
    with pytest.raises(ValueError, match=r"samples must be \(S, 2, 3\)"):
        CategoricalPredictive(torch.full((2, 3), 1 / 3), samples=torch.ones(4, 2, 2))
    terms = LossTerms(total=torch.tensor(1.5), parts={"nll": torch.tensor(1.0), "kl": torch.tensor(0.5)})
    assert terms.as_floats() == {"total": 1.5, "nll": 1.0, "kl": 0.5} and "kl" in terms
