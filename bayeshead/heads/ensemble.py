"""Deep ensembles (Lakshminarayanan et al. 2017) over one frozen backbone.

M members, each a MAP softmax head (and, with adapters, its own adapter parameters) started
from a different seed; the predictive is the mixture p(y | x) = (1/M)·Σ_m softmax(f_m(x)),
with the per-member probabilities kept for the mutual information.

:class:`EnsembleHead` (``"ensemble"``): M linear heads on shared features. The members'
losses are summed, so one optimizer step trains every member on its own gradient; they differ by
initialisation (the mini-batches are shared). One backbone pass per prediction. Ensembles of
adapters (M backbone passes) are the whole-model method ``ensemble`` (:mod:`bayeshead.methods.ensemble`).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import Tensor, nn

from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_class_targets, check_features
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["EnsembleHead", "EnsembleHeadConfig"]

_NAME = "ensemble head"


class EnsembleHeadConfig(HeadConfig):
    kind: Literal["ensemble"] = "ensemble"
    members: PositiveInt = Field(5, description="M, the number of ensemble members.")
    seed: NonNegativeInt = Field(0, description="Member m is initialised with seed + m.")
    weight_decay: NonNegativeFloat = 0.0
    bias: bool = True


@HEADS.register("ensemble", config=EnsembleHeadConfig)
class EnsembleHead(UncertaintyHead):
    """Deep ensemble of M softmax heads (seeds seed..seed+M-1) on shared features."""

    Config = EnsembleHeadConfig
    config: EnsembleHeadConfig

    def __init__(self, in_features: int, num_outputs: int, config: EnsembleHeadConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        cfg = self.config
        members = []
        for m in range(cfg.members):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + m)
                members.append(nn.Linear(in_features, num_outputs, bias=cfg.bias))
        self.members = nn.ModuleList(members)

    def member_logits(self, features: Tensor) -> Tensor:
        """Logits of every member, shape (M, B, C)."""
        phi = check_features(features, self.in_features, _NAME)
        return torch.stack([layer(phi.to(layer.weight.dtype)) for layer in self.members])

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """Σ_m [mean CE of member m + (λ/2)·‖W_m‖²]; ``nll`` logs the members' average CE."""
        logits = self.member_logits(features)
        targets = check_class_targets(targets, logits.shape[1], self.num_outputs, _NAME).to(logits.device)
        m, b, c = logits.shape
        per_member = nn.functional.cross_entropy(
            logits.reshape(m * b, c), targets.repeat(m), reduction="none"
        ).reshape(m, b).mean(1)
        total = per_member.sum()
        parts = {"nll": per_member.mean().detach()}
        if self.config.weight_decay > 0:
            penalty = 0.5 * self.config.weight_decay * sum(layer.weight.pow(2).sum() for layer in self.members)
            total = total + penalty
            parts["weight_decay"] = penalty.detach()
        return LossTerms(total=total, parts=parts)

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """The uniform mixture of the M members' softmaxes; sampling arguments are ignored."""
        return CategoricalPredictive.from_sample_logits(self.member_logits(features))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, members={self.config.members}"
