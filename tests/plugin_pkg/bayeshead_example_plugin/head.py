"""A label-smoothing softmax head (Szegedy et al. 2016), registered from outside bayeshead."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_class_targets, check_features
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive, LossTerms


class LabelSmoothingConfig(HeadConfig):
    kind: Literal["label_smoothing"] = "label_smoothing"
    smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="ε: target = (1-ε)·onehot + ε/C")


@HEADS.register("label_smoothing", config=LabelSmoothingConfig)
class LabelSmoothingHead(UncertaintyHead):
    """Softmax head trained with label smoothing (example plugin)."""

    Config = LabelSmoothingConfig

    def __init__(self, in_features: int, num_outputs: int, config: LabelSmoothingConfig | None = None):
        super().__init__(in_features, num_outputs, config)
        self.linear = nn.Linear(in_features, num_outputs)

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        features = check_features(features, self.in_features, "label_smoothing")
        targets = check_class_targets(targets, features.shape[0], self.num_outputs, "label_smoothing")
        nll = nn.functional.cross_entropy(
            self.linear(features), targets, label_smoothing=self.config.smoothing
        )
        return LossTerms(total=nll, parts={"nll": nll})

    def predict(self, features: Tensor, *, n_samples=None, generator: torch.Generator | None = None):
        features = check_features(features, self.in_features, "label_smoothing")
        return CategoricalPredictive.from_logits(self.linear(features))
