"""The deterministic Gaussian regression head (Nix & Weigend 1994, "Estimating the mean and
variance of the target probability distribution"; Lakshminarayanan et al. 2017, "Simple and
Scalable Predictive Uncertainty Estimation using Deep Ensembles").

For features φ and k outputs: mean μ = W·φ + b and log-variance s, either one learned constant
per output (``homoscedastic``: s_j) or a linear function of the features (``heteroscedastic``:
s = V·φ + c). The variance is v = exp(s) + v_min (v_min = ``min_variance`` keeps the NLL
bounded). Per-example loss on a batch of B examples

    L = (1/B)·Σ_b Σ_j ½[log 2π + log v_bj + (y_bj − μ_bj)² / v_bj]  +  (λ/2)·(‖W‖²_F + ‖V‖²_F)

(λ = ``weight_decay``: 0 is maximum likelihood, > 0 MAP under a Gaussian prior on the weights;
biases are not penalised). Predictive: N(μ, v) per output, no epistemic part.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat
from torch import Tensor, nn

from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_features
from bayeshead.heads.vbll_common import check_regression_targets
from bayeshead.registry import HEADS
from bayeshead.types import GaussianPredictive, LossTerms

__all__ = ["GaussianHead", "GaussianHeadConfig", "gaussian_nll"]

_NAME = "gaussian head"


def gaussian_nll(mean: Tensor, var: Tensor, targets: Tensor) -> Tensor:
    """Σ_j ½[log 2π + log v_j + (y_j − μ_j)²/v_j] per example, shape (B,)."""
    return 0.5 * (math.log(2 * math.pi) + var.log() + (targets - mean).pow(2) / var).sum(-1)


class GaussianHeadConfig(HeadConfig):
    kind: Literal["gaussian"] = "gaussian"
    variance: Literal["homoscedastic", "heteroscedastic"] = Field(
        "heteroscedastic",
        description="One learned noise variance per output, or a log-variance linear in the features.",
    )
    weight_decay: NonNegativeFloat = Field(
        0.0, description="λ in (λ/2)·(‖W‖² + ‖V‖²): 0 is maximum likelihood, > 0 MAP (biases unpenalised)."
    )
    bias: bool = True
    noise_init: PositiveFloat = Field(1.0, description="Initial noise standard deviation (the variance starts at its square).")
    min_variance: NonNegativeFloat = Field(1e-6, description="v_min added to exp(s) so the NLL stays bounded.")


@HEADS.register("gaussian", config=GaussianHeadConfig)
class GaussianHead(UncertaintyHead):
    """Deterministic Gaussian head: mean and log-variance, trained by the Gaussian NLL."""

    Config = GaussianHeadConfig
    config: GaussianHeadConfig
    task_type = "regression"

    def __init__(self, in_features: int, num_outputs: int, config: GaussianHeadConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        cfg = self.config
        self.linear = nn.Linear(in_features, num_outputs, bias=cfg.bias)
        start = math.log(max(cfg.noise_init**2 - cfg.min_variance, 1e-12))
        if cfg.variance == "heteroscedastic":
            self.log_var = nn.Linear(in_features, num_outputs)
            nn.init.zeros_(self.log_var.weight)
            nn.init.constant_(self.log_var.bias, start)
        else:
            self.log_var = nn.Parameter(torch.full((num_outputs,), start))

    @property
    def name(self) -> str:
        return _NAME

    def mean_and_var(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """μ (B, k) and v = exp(s) + v_min (B, k)."""
        features = check_features(features, self.in_features, self.name)
        features = features.to(self.linear.weight.dtype)
        mean = self.linear(features)
        if isinstance(self.log_var, nn.Linear):
            log_var = self.log_var(features)
        else:
            log_var = self.log_var.expand_as(mean)
        return mean, log_var.exp() + self.config.min_variance

    def penalty(self) -> Tensor:
        """(λ/2)·(‖W‖²_F + ‖V‖²_F) (V only when heteroscedastic)."""
        squares = self.linear.weight.pow(2).sum()
        if isinstance(self.log_var, nn.Linear):
            squares = squares + self.log_var.weight.pow(2).sum()
        return 0.5 * self.config.weight_decay * squares

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        mean, var = self.mean_and_var(features)
        y = check_regression_targets(targets, mean.shape[0], self.num_outputs, self.name).to(mean)
        nll = gaussian_nll(mean, var, y).mean()
        parts = {"nll": nll}
        total = nll
        if self.config.weight_decay > 0:
            parts["weight_decay"] = self.penalty()
            total = total + parts["weight_decay"]
        return LossTerms(total=total, parts=parts)

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> GaussianPredictive:
        """N(μ, v); ``n_samples`` and ``generator`` are ignored (no randomness)."""
        mean, var = self.mean_and_var(features)
        return GaussianPredictive(mean=mean, var=var)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, variance={self.config.variance}"
