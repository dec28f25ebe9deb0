"""Monte-Carlo dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation").

Dropout kept on at test time is approximate inference; the predictive averages T stochastic
passes, p(y | x) ≈ (1/T)·Σ_t softmax(f_t(x)), and the spread of the T passes gives the mutual
information (epistemic uncertainty).

This head drops the features φ before the linear head with rate p,
f_t = W·(m_t ⊙ φ)/(1 − p) + b with m_t ~ Bernoulli(1 − p)^d: one backbone pass, T head samples
drawn from ``generator`` (seedable). Dropout *inside* the backbone and adapters (T backbone
passes) is the whole-model method ``mc_dropout`` (:mod:`bayeshead.methods.mc_dropout`).

Training is the softmax cross-entropy with the dropout on (+ (λ/2)·‖W‖², λ = weight decay).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator
from torch import Tensor, nn

from bayeshead.errors import UserInputError
from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_features
from bayeshead.heads.deterministic import map_softmax_loss
from bayeshead.registry import HEADS
from bayeshead.search_space import LogUniform, SearchSpace, Uniform
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["MCDropoutHead", "MCDropoutHeadConfig"]

_NAME = "mc_dropout head"


class MCDropoutHeadConfig(HeadConfig):
    kind: Literal["mc_dropout"] = "mc_dropout"
    search_space: ClassVar[SearchSpace] = {
        "head.p": Uniform(low=0.05, high=0.5),
        "head.weight_decay": LogUniform(low=1e-6, high=1e-1),
    }
    p: float = Field(0.1, gt=0.0, lt=1.0, description="Dropout rate on the features, 0 < p < 1.")
    n_samples: PositiveInt = Field(20, description="T, head samples per prediction when predict gets none.")
    weight_decay: NonNegativeFloat = 0.0
    bias: bool = True

    @model_validator(mode="before")
    @classmethod
    def _moved_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and "mode" in data:
            raise UserInputError(
                f"the mc_dropout head has no 'mode' (got mode={data['mode']!r}): it always drops the "
                "features. Dropout inside the backbone (T backbone passes) is the whole-model method: "
                "set method.kind=mc_dropout and adapter.dropout=0.1 (with any head, e.g. deterministic)"
            )
        return data


@HEADS.register("mc_dropout", config=MCDropoutHeadConfig)
class MCDropoutHead(UncertaintyHead):
    """MC dropout on the features: T head samples from one backbone pass."""

    Config = MCDropoutHeadConfig
    config: MCDropoutHeadConfig

    def __init__(self, in_features: int, num_outputs: int, config: MCDropoutHeadConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        self.linear = nn.Linear(in_features, num_outputs, bias=self.config.bias)

    def _features(self, features: Tensor) -> Tensor:
        return check_features(features, self.in_features, _NAME).to(self.linear.weight.dtype)

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """Cross-entropy of the dropped-out features (dropout only while ``self.training``)."""
        phi = nn.functional.dropout(self._features(features), self.config.p, training=self.training)
        logits = self.linear(phi)
        return map_softmax_loss(logits, targets, self.linear.weight, self.config.weight_decay, _NAME)

    def sample_logits(self, features: Tensor, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """T logit samples (T, B, C) with independent feature-dropout masks drawn from ``generator``."""
        phi = self._features(features)
        if n_samples <= 0:
            raise UserInputError(f"{_NAME}: n_samples must be a positive integer, got {n_samples}")
        p = self.config.p
        keep = torch.rand((n_samples, *phi.shape), generator=generator, device=phi.device) >= p
        return self.linear(phi * keep.to(phi.dtype) / (1.0 - p))

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """The average of T feature-dropout samples (kept for the mutual information)."""
        t = int(n_samples if n_samples is not None else self.config.n_samples)
        return CategoricalPredictive.from_sample_logits(self.sample_logits(features, t, generator))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.config.p}"
