"""Post-hoc variance scaling: the regression analogue of temperature scaling (Guo et al. 2017;
for regression Levi et al. 2022, "Evaluating and Calibrating Uncertainty Prediction in
Regression Tasks", and Laves et al. 2020, "Well-calibrated regression uncertainty in medical
imaging with deep learning").

A :mod:`Gaussian head <bayeshead.heads.gaussian>` trained as usual whose predictive variance is
multiplied by one s > 0 at prediction: N(μ, s·v). After training, :meth:`fit_posthoc` on held-out
data minimises the validation NLL

    (1/n)·Σ_i ½[log 2π + log s v_i + (y_i − μ_i)² / (s v_i)]

over s; setting the derivative to zero gives the closed form

    s* = (1/n)·Σ_i (y_i − μ_i)² / v_i

(n = N_val·k: one scalar over all outputs). s* is clipped to [``min_scale``, ``max_scale``] with
a warning when it hits a limit. Scaling leaves the mean, hence RMSE and correlations, unchanged.
s lives in a buffer, so a saved state_dict restores it.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from pydantic import Field, PositiveFloat, model_validator
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.base import LateFittedFlag
from bayeshead.heads.gaussian import GaussianHead, GaussianHeadConfig
from bayeshead.heads.vbll_common import check_regression_targets
from bayeshead.registry import HEADS
from bayeshead.types import GaussianPredictive

__all__ = ["VarianceScalingHead", "VarianceScalingConfig", "fit_variance_scale"]

_NAME = "variance_scaling head"


class VarianceScalingConfig(GaussianHeadConfig):
    kind: Literal["variance_scaling"] = "variance_scaling"  # type: ignore[assignment]
    min_scale: PositiveFloat = Field(1e-3, description="Lower limit of the fitted variance scale s.")
    max_scale: PositiveFloat = Field(1e3, description="Upper limit of the fitted variance scale s.")

    @model_validator(mode="after")
    def _check(self) -> VarianceScalingConfig:
        if self.min_scale >= self.max_scale:
            raise UserInputError(f"min_scale must be below max_scale, got {self.min_scale} and {self.max_scale}")
        return self


def fit_variance_scale(mean: Tensor, var: Tensor, targets: Tensor) -> float:
    """s* = mean((y − μ)² / v) over every example and output, in float64 (the NLL minimiser)."""
    mean, var, targets = mean.detach().double(), var.detach().double(), targets.detach().double()
    if mean.numel() == 0:
        raise UserInputError(f"{_NAME}: fit_posthoc needs at least one validation example, got none")
    return float(((targets - mean).pow(2) / var).mean())


@HEADS.register("variance_scaling", config=VarianceScalingConfig)
class VarianceScalingHead(LateFittedFlag, GaussianHead):
    """Gaussian head whose predictive variance is multiplied by s > 0 fitted on validation NLL."""

    Config = VarianceScalingConfig  # type: ignore[assignment]
    config: VarianceScalingConfig  # type: ignore[assignment]
    posthoc_data = "validation"
    fitted_marker = "variance_scale"

    def __init__(self, in_features: int, num_outputs: int, config: VarianceScalingConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        self.register_buffer("variance_scale", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))


    @property
    def name(self) -> str:
        return _NAME

    @torch.no_grad()
    def fit_posthoc(self, features: Tensor, targets: Tensor, **kwargs: Any) -> dict[str, float]:
        """Fit s on held-out (validation) ``features`` (N, d) and ``targets`` (N,) or (N, k);
        returns ``{"variance_scale": s}``."""
        if kwargs:
            raise InputTypeError(f"{_NAME}: unexpected fit_posthoc arguments {sorted(kwargs)}")
        mean, var = self.mean_and_var(features)
        y = check_regression_targets(targets, mean.shape[0], self.num_outputs, _NAME)
        raw = fit_variance_scale(mean, var, y)
        low, high = self.config.min_scale, self.config.max_scale
        scale = min(max(raw, low), high)
        if scale != raw:
            warnings.warn(
                f"{_NAME}: the fitted variance scale {raw:.4g} lies outside [{low:g}, {high:g}] and was clipped "
                f"to {scale:g}; the head's variances are far off on the validation data (check the targets' "
                "scale, or widen min_scale/max_scale)",
                RuntimeWarning,
                stacklevel=2,
            )
        self.variance_scale.fill_(scale)
        self.fitted.fill_(True)
        return {"variance_scale": scale}

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> GaussianPredictive:
        """N(μ, s·v); ``n_samples`` and ``generator`` are ignored (no randomness). Before
        :meth:`fit_posthoc` it raises :class:`~bayeshead.errors.NotFittedError`, except inside
        :meth:`training_predictive`, where it is the unscaled N(μ, v)."""
        mean, var = self.mean_and_var(features)
        if not bool(self.fitted):
            self.refuse_unfitted("a variance scale fitted on validation data", "head.fit_posthoc(val_features, val_targets)")
            return GaussianPredictive(mean=mean, var=var)
        return GaussianPredictive(mean=mean, var=var * self.variance_scale.to(var.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, variance_scale={float(self.variance_scale):.4g}"
