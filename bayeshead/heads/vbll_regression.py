"""VBLL regression head (Harrison, Willes & Snoek, "Variational Bayesian Last Layers", ICLR 2024).

Model: y_j = w_jᵀφ + b_j + ε_j, ε_j ~ N(0, σ_j²), j = 1..k, prior w_j ~ N(0, s·I) (s from
``prior_scale`` and ``prior_width_scaling``), posterior q(w_j) = N(w̄_j, S_j) with S_j diagonal,
dense or low rank (:mod:`bayeshead.heads.covariance`). The optional bias b is a point estimate.

The expected log-likelihood is exact:

    E_q[log N(y_j | w_jᵀφ, σ_j²)] = log N(y_j | w̄_jᵀφ, σ_j²) − ½·φᵀS_jφ / σ_j²,

and the per-example loss on a mini-batch of B examples is

    loss = −(1/B)·Σ_b Σ_j E_q[log N(y_bj | ·)]  +  (1/N)·Σ_j KL(q(w_j) ‖ p)  [+ (1/N)·noise prior],

so −N·loss on the full data set is the ELBO. The noise prior is vbll's Wishart-type term
(:func:`~bayeshead.heads.vbll_common.noise_prior_term`). Predictive: N(w̄_jᵀφ + b_j, φᵀS_jφ + σ_j²).

vbll's ``Regression`` divides the data term by k as well (mean over outputs) and weights each
output's trace term by Σ_i σ_i⁻² instead of σ_j⁻²; for k = 1 the two agree (up to vbll's KL
omitting the constant −d/2 per row), for k > 1 this head follows the formula above.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, PositiveFloat
from torch import Tensor

from bayeshead.heads.vbll_common import (
    VBLLConfigBase,
    WidthScaling,
    check_regression_targets,
    elbo_terms,
)
from bayeshead.heads.vbll_rows import VBLLRowsHead
from bayeshead.registry import HEADS
from bayeshead.types import GaussianPredictive, LossTerms

__all__ = ["VBLLRegressionHead", "VBLLRegressionConfig"]

_NAME = "vbll_regression head"


class VBLLRegressionConfig(VBLLConfigBase):
    kind: Literal["vbll_regression"] = "vbll_regression"
    prior_width_scaling: WidthScaling = Field(
        "1/d", description="Prior variance s₀ ('none'), s₀/d ('1/d', vbll's default) or 2s₀/d ('2/d')."
    )
    noise_init: PositiveFloat = Field(1.0, description="Initial noise standard deviation σ_j.")
    wishart_scale: PositiveFloat = Field(1e-2, description="s_w of the noise prior term (vbll: 1e-2).")
    bias: bool = Field(False, description="Add a point-estimated output offset b (no prior).")


@HEADS.register("vbll_regression", config=VBLLRegressionConfig)
class VBLLRegressionHead(VBLLRowsHead):
    """Variational Bayesian last layer for regression: exact ELBO, closed-form Gaussian predictive."""

    Config = VBLLRegressionConfig
    config: VBLLRegressionConfig
    task_type = "regression"

    # -- pieces ------------------------------------------------------------------------------
    def noise_var(self) -> Tensor:
        """σ_j², shape (k,)."""
        return (2.0 * self.noise_log_std).exp()

    def expected_log_likelihood(self, features: Tensor, targets: Tensor) -> Tensor:
        """Σ_j E_q[log N(y_j | w_jᵀφ, σ_j²)] per example, shape (B,) (closed form)."""
        mean, wvar = self.mean_and_quadratic(features)
        y = check_regression_targets(targets, mean.shape[0], self.num_outputs, _NAME)
        y = y.to(device=mean.device, dtype=mean.dtype)
        noise_var = self.noise_var()
        log_lik = -0.5 * (math.log(2 * math.pi) + 2.0 * self.noise_log_std + (y - mean).pow(2) / noise_var)
        return (log_lik - 0.5 * wvar / noise_var).sum(-1)

    # -- interface ---------------------------------------------------------------------------
    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        nll = -self.expected_log_likelihood(features, targets).mean()
        return elbo_terms("nll", nll, self)

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> GaussianPredictive:
        """N(w̄_jᵀφ + b_j, φᵀS_jφ + σ_j²), closed form, with φᵀS_jφ as the epistemic part;
        ``n_samples``/``generator`` are ignored."""
        mean, wvar = self.mean_and_quadratic(features)
        return GaussianPredictive(mean=mean, var=wvar + self.noise_var(), epistemic_var=wvar)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, prior_var={self.prior_var:.4g}"

