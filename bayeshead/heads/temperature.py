"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

A MAP softmax head (the loss of :mod:`bayeshead.heads.deterministic`) whose logits are divided
by one temperature T > 0 at prediction: p = softmax(z / T). After training,
:meth:`TemperatureHead.fit_posthoc` on held-out features chooses

    T* = argmin_{T in [T_min, T_max]}  (1/N_val)·Σ_n −log softmax(z_n / T)_{y_n}

by Brent's bounded search on log T (the NLL is convex in 1/T, so it has one minimum on the
interval). A T* at a limit of the search warns: validation data the head separates perfectly
drive T towards 0 (every logit scaled up without end), which makes test predictions
overconfident. Scaling by T keeps the arg-max, hence the accuracy.

Before the fit, :meth:`TemperatureHead.predict` refuses
(:class:`~bayeshead.errors.NotFittedError`), except inside
:meth:`~bayeshead.heads.base.UncertaintyHead.training_predictive`, where it is the MAP softmax
(T = 1; the trainer's validation pass). T and a ``fitted`` flag live in buffers, so a saved
state_dict restores them; a state_dict saved before the flag existed loads as fitted.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator
from torch import Tensor, nn

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.base import (
    HeadConfig,
    LateFittedFlag,
    UncertaintyHead,
    check_class_targets,
    check_features,
)
from bayeshead.heads.deterministic import map_softmax_loss
from bayeshead.posthoc_bounds import bound_side, warn_at_bound
from bayeshead.registry import HEADS
from bayeshead.search_space import LogUniform, SearchSpace
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["TemperatureHead", "TemperatureHeadConfig", "fit_temperature"]

_NAME = "temperature head"


class TemperatureHeadConfig(HeadConfig):
    kind: Literal["temperature"] = "temperature"
    search_space: ClassVar[SearchSpace] = {"head.weight_decay": LogUniform(low=1e-6, high=1e-1)}
    weight_decay: NonNegativeFloat = Field(0.0, description="λ of the MAP loss (λ/2)·‖W‖².")
    bias: bool = True
    init_temperature: PositiveFloat = Field(
        1.0, description="T held in the buffer before the fit (the fit searches [min_temperature, max_temperature])."
    )
    min_temperature: PositiveFloat = Field(0.05, description="Lower limit of the T search; a T* there warns.")
    max_temperature: PositiveFloat = Field(100.0, description="Upper limit of the T search; a T* there warns.")
    max_iter: PositiveInt = Field(100, description="Iterations of the bounded search for T.")

    @model_validator(mode="after")
    def _range(self) -> TemperatureHeadConfig:
        if self.min_temperature >= self.max_temperature:
            raise UserInputError(
                f"min_temperature must be below max_temperature, got {self.min_temperature} and {self.max_temperature}"
            )
        return self


def fit_temperature(
    logits: Tensor, targets: Tensor, low: float = 0.05, high: float = 100.0, max_iter: int = 100
) -> float:
    """T* in [low, high] minimising the mean NLL of softmax(logits / T) (Brent's bounded search
    on log T, fp64). Warns (``RuntimeWarning``) when T* is at either limit."""
    from scipy.optimize import minimize_scalar

    if not 0 < low < high:
        raise UserInputError(f"fit_temperature: need 0 < low < high, got low={low}, high={high}")
    logits = logits.detach().double()
    targets = targets.long().to(logits.device)

    def nll(log_t: float) -> float:
        return float(nn.functional.cross_entropy(logits * math.exp(-log_t), targets))

    lo, hi = math.log(low), math.log(high)
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6, "maxiter": max_iter})
    log_t = float(result.x)
    value = math.exp(log_t)
    if not math.isfinite(value) or value <= 0:
        raise RuntimeError(f"temperature fit diverged (T = {value}); check the validation logits and labels")
    side = bound_side(log_t, lo, hi, rtol=1e-4)
    if side is not None:
        cause = (
            "the head separates the validation data perfectly, so sharper is always better there and test "
            "predictions get overconfident: hold out more (or harder) validation data"
            if side == "lower"
            else "the head is far too confident on the validation data: check its labels, or raise max_temperature"
        )
        warn_at_bound(f"{_NAME}: temperature T", value, low, high, side, cause)
    return value


@HEADS.register("temperature", config=TemperatureHeadConfig)
class TemperatureHead(LateFittedFlag, UncertaintyHead):
    """Temperature scaling: MAP softmax head, logits divided by a T > 0 fitted on validation NLL."""

    Config = TemperatureHeadConfig
    config: TemperatureHeadConfig
    posthoc_data = "validation"
    fitted_marker = "temperature"

    def __init__(self, in_features: int, num_outputs: int, config: TemperatureHeadConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        self.linear = nn.Linear(in_features, num_outputs, bias=self.config.bias)
        self.register_buffer("temperature", torch.tensor(float(self.config.init_temperature)))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)


    def logits(self, features: Tensor) -> Tensor:
        """Unscaled logits W·φ + b."""
        features = check_features(features, self.in_features, _NAME)
        return self.linear(features.to(self.linear.weight.dtype))

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """The MAP objective on unscaled logits: mean cross-entropy + (λ/2)·‖W‖²."""
        logits = self.logits(features)
        return map_softmax_loss(logits, targets, self.linear.weight, self.config.weight_decay, _NAME)

    @torch.no_grad()
    def fit_posthoc(self, features: Tensor, targets: Tensor, **kwargs: Any) -> dict[str, float]:
        """Fit T on held-out (validation) ``features`` (N, d) and ``targets`` (N,); returns T."""
        if kwargs:
            raise InputTypeError(f"{_NAME}: unexpected fit_posthoc arguments {sorted(kwargs)}")
        logits = self.logits(features)
        targets = check_class_targets(targets, logits.shape[0], self.num_outputs, _NAME)
        if logits.shape[0] == 0:
            raise UserInputError(f"{_NAME}: fit_posthoc needs at least one validation example, got none")
        cfg = self.config
        value = fit_temperature(logits, targets, cfg.min_temperature, cfg.max_temperature, cfg.max_iter)
        self.temperature.fill_(value)
        self.fitted.fill_(True)
        return {"temperature": float(value)}

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """softmax(z / T); ``n_samples`` and ``generator`` are ignored (no randomness). Before
        :meth:`fit_posthoc` it raises :class:`~bayeshead.errors.NotFittedError`, except inside
        :meth:`training_predictive`, where it is the MAP softmax (T = 1)."""
        if not self.is_fitted:
            self.refuse_unfitted("a temperature", "head.fit_posthoc(val_features, val_labels)")
            return CategoricalPredictive.from_logits(self.logits(features))
        return CategoricalPredictive.from_logits(self.logits(features) / self.temperature)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={float(self.temperature):.4g}, fitted={self.is_fitted}"
