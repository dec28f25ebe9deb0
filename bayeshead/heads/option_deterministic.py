"""The deterministic per-option head: MLE, or MAP with weight decay.

Option logits z_{q,k} = wᵀh_{q,k} (+ b_k); per-question loss

    L = −(1/Q)·Σ_q log softmax_{k < n_q}(z_{q,·})_{y_q} + (λ/2)·‖w‖²,

so that N·L is the negative log posterior under w ~ N(0, (N·λ)⁻¹ I) (N training questions;
λ = 0 is MLE). The position bias is not penalised.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat
from torch import Tensor, nn

from bayeshead.errors import UserInputError
from bayeshead.heads.deterministic import DeterministicHeadConfig
from bayeshead.heads.option_base import OptionHead, OptionHeadConfig
from bayeshead.heads.option_scoring import (
    OptionPredictive,
    check_option_targets,
    segment_log_softmax,
)
from bayeshead.registry import HEADS
from bayeshead.search_space import SearchSpace
from bayeshead.types import LossTerms

__all__ = ["DeterministicOptionHead", "DeterministicOptionConfig"]


class DeterministicOptionConfig(OptionHeadConfig):
    kind: Literal["deterministic_options"] = "deterministic_options"
    search_space: ClassVar[SearchSpace] = DeterministicHeadConfig.search_space  # the class-row head's
    weight_decay: NonNegativeFloat = Field(0.0, description="λ in (λ/2)·‖w‖²: 0 is MLE, > 0 is MAP.")


@HEADS.register("deterministic_options", config=DeterministicOptionConfig)
class DeterministicOptionHead(OptionHead):
    """One weight vector w scores every option; softmax over each question's own options."""

    Config = DeterministicOptionConfig
    config: DeterministicOptionConfig

    def __init__(self, in_features: int, max_options: int, config: DeterministicOptionConfig | None = None) -> None:
        super().__init__(in_features, max_options, config)
        self.weight = nn.Parameter(torch.zeros(in_features))

    @torch.no_grad()
    def init_from_vector(self, weight: Tensor, bias: Tensor | None = None) -> DeterministicOptionHead:
        """Set w (d,) and, if given, the position bias (max_options,)."""
        if weight.shape != (self.in_features,):
            raise UserInputError(f"{self._name}: expected a weight of shape ({self.in_features},), got {tuple(weight.shape)}")
        self.weight.copy_(weight.to(self.weight.dtype))
        if bias is not None:
            if self.position_bias is None:
                raise UserInputError(f"{self._name}: got a bias but the head has none; set position_bias=True in its config")
            self.position_bias.copy_(bias.to(self.position_bias.dtype))
        return self

    def logits(self, features: Tensor, counts: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """Flat option logits z = H w (+ b_k), (N,), and the validated counts."""
        features, counts = self.check_inputs(features, counts)
        z = features.to(self.weight.dtype) @ self.weight
        offsets = self.offsets(counts)
        return (z if offsets is None else z + offsets), counts

    def loss_flat(self, features: Tensor, counts: Tensor | list[int], targets: Tensor) -> LossTerms:
        z, counts = self.logits(features, counts)
        y = check_option_targets(targets, counts, self._name)
        starts = torch.cumsum(counts, 0) - counts
        nll = -segment_log_softmax(z, counts)[starts + y].mean()
        parts = {"nll": nll}
        total = nll
        if self.config.weight_decay > 0:
            parts["weight_decay"] = 0.5 * self.config.weight_decay * self.weight.pow(2).sum()
            total = total + parts["weight_decay"]
        return LossTerms(total=total, parts=parts)

    def predict_flat(
        self,
        features: Tensor,
        counts: Tensor | list[int],
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> OptionPredictive:
        """Segment softmax of H w (+ b); ``n_samples`` and ``generator`` are ignored."""
        z, counts = self.logits(features, counts)
        return OptionPredictive.from_logits(z, counts)
