"""The registered "laplace_adapters" method: MAP training, post-hoc Laplace over the adapters with
δ by marginal likelihood, model-level GLM predictive, and a clear refusal after reloading."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import SENTIMENT, tiny_model

from bayeshead.data import TextDataset
from bayeshead.heads.laplace_adapters_head import LaplaceAdaptersHead
from bayeshead.registry import HEADS
from bayeshead.training import Trainer

TRAIN = TextDataset(*SENTIMENT)
OVERRIDES = [
    "adapter.kind=lora", "adapter.rank=2", "adapter.target_modules=[q_proj]", "head.kind=laplace_adapters",
    "head.hessian_structure=full", "optimizer.lr=0.05", "training.batch_size=4", "training.epochs=2",
]


def test_registered_and_fitted_by_the_trainer(offline_tokenizer):
    assert "laplace_adapters" in HEADS.names()
    model = tiny_model(offline_tokenizer, OVERRIDES, dtype=torch.float64)
    assert isinstance(model.head, LaplaceAdaptersHead)
    with pytest.raises(RuntimeError, match="fit_posthoc_model"):
        model.predict(["x"])
    Trainer(model).fit(TRAIN)
    laplace = model.head.laplace
    assert laplace is not None and laplace.structure == "full"
    delta = float(model.head.prior_precision)
    # δ maximises the log marginal likelihood: better than a grid around it
    best = float(laplace.log_marginal_likelihood(delta))
    for factor in (0.5, 0.9, 1.1, 2.0):
        assert best >= float(laplace.log_marginal_likelihood(delta * factor)) - 1e-9
    grid = [math.exp(x) for x in torch.linspace(-10, 10, 81).tolist()]
    assert best >= max(float(laplace.log_marginal_likelihood(d)) for d in grid) - 1e-6

    texts = ["great", "awful", "fine movie"]
    glm = model.predict(texts)
    map_probs = model.head.predict(model.features(texts)).probs
    torch.testing.assert_close(glm.probs.sum(-1), torch.ones(3, dtype=glm.probs.dtype))
    assert not torch.allclose(glm.probs.to(map_probs.dtype), map_probs)
    # the GLM predictive is less confident than the MAP on average
    assert glm.probs.max(-1).values.mean() <= map_probs.max(-1).values.mean() + 1e-12


def test_fixed_prior_and_theta_only_for_polar(offline_tokenizer):
    model = tiny_model(
        offline_tokenizer,
        ["adapter.kind=polar", "adapter.rank=2", "adapter.target_modules=[q_proj]", "optimizer.kind=riemannian_adam",
         "head.kind=laplace_adapters", "head.prior_optimization=none", "head.prior_precision=3.0",
         "training.max_steps=2", "training.batch_size=4"],
    )
    Trainer(model).fit(TRAIN)
    assert float(model.head.prior_precision) == 3.0
    assert all(name.endswith("theta") for name in model.head.laplace.names)
    with pytest.raises(TypeError, match="fit_posthoc_model"):
        model.head.fit_posthoc(torch.zeros(2, model.head.in_features), torch.tensor([0, 1]))


def test_reloaded_model_refuses_laplace_prediction_until_refit(offline_tokenizer, tmp_path):
    model = tiny_model(offline_tokenizer, [*OVERRIDES, "head.hessian_structure=diag", "training.max_steps=2"])
    Trainer(model).fit(TRAIN)
    fresh = tiny_model(offline_tokenizer, [*OVERRIDES, "head.hessian_structure=diag"])
    fresh.head.load_state_dict(model.head.state_dict())
    assert float(fresh.head.prior_precision) == float(model.head.prior_precision)
    with pytest.raises(RuntimeError, match="reloaded"):
        fresh.predict(["x"])
