"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

A MAP softmax head (the loss of :mod:`bayeshead.heads.deterministic`) whose logits are divided
by one temperature T > 0 at prediction: p = softmax(z / T). After training,
:meth:`TemperatureHead.fit_posthoc` on held-out features chooses

    T* = argmin_T  (1/N_val)·Σ_n −log softmax(z_n / T)_{y_n}

by L-BFGS on log T (so T stays positive). Scaling by T keeps the arg-max, hence the accuracy.
T lives in a buffer, so a saved state_dict restores it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import Tensor, nn

from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_class_targets, check_features
from bayeshead.heads.deterministic import map_softmax_loss
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["TemperatureHead", "TemperatureHeadConfig", "fit_temperature"]

_NAME = "temperature head"


class TemperatureHeadConfig(HeadConfig):
    kind: Literal["temperature"] = "temperature"
    weight_decay: NonNegativeFloat = Field(0.0, description="λ of the MAP loss (λ/2)·‖W‖².")
    bias: bool = True
    init_temperature: PositiveFloat = 1.0
    max_iter: PositiveInt = Field(100, description="L-BFGS iterations of the temperature fit.")


def fit_temperature(logits: Tensor, targets: Tensor, init: float = 1.0, max_iter: int = 100) -> float:
    """T* minimising the mean NLL of softmax(logits / T) (L-BFGS on log T, fp64)."""
    logits = logits.detach().double()
    targets = targets.long().to(logits.device)
    log_t = torch.tensor(math.log(init), dtype=torch.float64, device=logits.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits * torch.exp(-log_t), targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    value = float(log_t.detach().exp())
    if not math.isfinite(value) or value <= 0:
        raise RuntimeError(f"temperature fit diverged (T = {value}); check the validation logits and labels")
    return value


@HEADS.register("temperature", config=TemperatureHeadConfig)
class TemperatureHead(UncertaintyHead):
    """Temperature scaling: MAP softmax head, logits divided by a T > 0 fitted on validation NLL."""

    Config = TemperatureHeadConfig
    config: TemperatureHeadConfig
    posthoc_data = "validation"

    def __init__(self, in_features: int, num_outputs: int, config: TemperatureHeadConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        self.linear = nn.Linear(in_features, num_outputs, bias=self.config.bias)
        self.register_buffer("temperature", torch.tensor(float(self.config.init_temperature)))

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
            raise TypeError(f"{_NAME}: unexpected fit_posthoc arguments {sorted(kwargs)}")
        logits = self.logits(features)
        targets = check_class_targets(targets, logits.shape[0], self.num_outputs, _NAME)
        if logits.shape[0] == 0:
            raise ValueError(f"{_NAME}: fit_posthoc needs at least one validation example, got none")
        value = fit_temperature(logits, targets, float(self.config.init_temperature), self.config.max_iter)
        self.temperature.fill_(value)
        return {"temperature": float(value)}

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """softmax(z / T); ``n_samples`` and ``generator`` are ignored (no randomness)."""
        return CategoricalPredictive.from_logits(self.logits(features) / self.temperature)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={float(self.temperature):.4g}"
