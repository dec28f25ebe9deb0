"""The deterministic softmax head: the MLE baseline, and MAP with weight decay.

Logits z = W·φ + b. Per-example loss

    L = -(1/B)·Σ_i log softmax(z_i)_{y_i} + (λ/2)·‖W‖²_F

so that N·L is the negative log posterior under the Gaussian prior W ~ N(0, (N·λ)⁻¹ I)
(weight decay λ = MAP; λ = 0 is MLE). The bias is not penalised.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat
from torch import Tensor, nn

from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_class_targets, check_features
from bayeshead.registry import HEADS
from bayeshead.search_space import LogUniform, SearchSpace
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["DeterministicHead", "DeterministicHeadConfig", "map_softmax_loss"]


def map_softmax_loss(
    logits: Tensor, targets: Tensor, weight: Tensor, weight_decay: float, head: str
) -> LossTerms:
    """Mean cross-entropy of ``logits`` (B, C) + (λ/2)·‖W‖²_F (parts ``nll``, ``weight_decay``);
    the MAP objective shared by every head built on a softmax linear layer."""
    targets = check_class_targets(targets, logits.shape[0], logits.shape[1], head)
    nll = nn.functional.cross_entropy(logits, targets.to(logits.device))
    parts = {"nll": nll}
    total = nll
    if weight_decay > 0:
        parts["weight_decay"] = 0.5 * weight_decay * weight.pow(2).sum()
        total = total + parts["weight_decay"]
    return LossTerms(total=total, parts=parts)


class DeterministicHeadConfig(HeadConfig):
    kind: Literal["deterministic"] = "deterministic"
    search_space: ClassVar[SearchSpace] = {"head.weight_decay": LogUniform(low=1e-6, high=1e-1)}
    weight_decay: NonNegativeFloat = Field(
        0.0, description="λ in (λ/2)·‖W‖²: 0 is MLE, > 0 is MAP under a Gaussian prior."
    )
    bias: bool = True


@HEADS.register("deterministic", config=DeterministicHeadConfig)
class DeterministicHead(UncertaintyHead):
    """Softmax linear head: MLE, or MAP with weight decay (a Gaussian prior on the weights)."""

    Config = DeterministicHeadConfig
    config: DeterministicHeadConfig

    def __init__(
        self, in_features: int, num_outputs: int, config: DeterministicHeadConfig | None = None
    ) -> None:
        super().__init__(in_features, num_outputs, config)
        self.linear = nn.Linear(in_features, num_outputs, bias=self.config.bias)

    @property
    def weight(self) -> Tensor:
        return self.linear.weight

    @property
    def bias(self) -> Tensor | None:
        return self.linear.bias

    def logits(self, features: Tensor) -> Tensor:
        features = check_features(features, self.in_features, "deterministic head")
        return self.linear(features.to(self.linear.weight.dtype))

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        return map_softmax_loss(
            self.logits(features), targets, self.linear.weight, self.config.weight_decay, "deterministic head"
        )

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """softmax(W·φ + b); ``n_samples`` and ``generator`` are accepted and ignored (no randomness)."""
        return CategoricalPredictive.from_logits(self.logits(features))
