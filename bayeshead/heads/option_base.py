"""The interface of per-option (multiple-choice) heads.

A per-option head scores every answer option with the same parameters: option k of question q,
with features h_{q,k} ∈ R^d (the option's own sequence through the backbone), gets the logit

    z_{q,k} = wᵀ h_{q,k} (+ b_k),

with one parameter vector w shared by all options and questions, and an optional point-estimated
bias b_k per position k < K (``position_bias``; K = ``max_options``). The probability of option k
is the softmax over the question's own n_q options (:mod:`bayeshead.heads.option_scoring`), so
questions with 2, 3, 4 or 5 options mix in one batch without padding classes or masks.

Inputs are flat: ``features`` (N, d) for the N = Σ_q n_q option rows in question order,
``counts`` (Q,) the option counts, ``targets`` (Q,) the index of the correct option within each
question. These heads are not registered in :data:`bayeshead.registry.HEADS`: the class-row heads
there take one feature row per example, these take a group of rows per question.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from bayeshead.heads.base import HeadConfig, check_features
from bayeshead.heads.option_scoring import OptionPredictive, check_counts, option_positions
from bayeshead.types import LossTerms

__all__ = ["OptionHead", "OptionHeadConfig"]


class OptionHeadConfig(HeadConfig):
    """Fields every per-option head has (``n_train`` = the number of training *questions*)."""

    position_bias: bool = Field(
        False, description="Add a point-estimated logit offset b_k for each option position k < max_options."
    )


class OptionHead(nn.Module, ABC):
    """Base of per-option heads: validation of (features, counts, targets), the position bias,
    ``n_train``. Subclasses implement :meth:`loss` and :meth:`predict`."""

    Config: ClassVar[type[OptionHeadConfig]] = OptionHeadConfig
    task_type: ClassVar[str] = "multiple_choice"

    def __init__(self, in_features: int, max_options: int, config: Any = None) -> None:
        super().__init__()
        if in_features <= 0:
            raise ValueError(f"{type(self).__name__}: in_features must be positive, got {in_features}")
        if max_options < 2:
            raise ValueError(
                f"{type(self).__name__}: max_options is the most options a question may have (at least 2), "
                f"got {max_options}"
            )
        self.in_features = int(in_features)
        self.max_options = int(max_options)
        self.config = config if config is not None else self.Config()  # type: ignore[call-arg]
        self.position_bias = nn.Parameter(torch.zeros(self.max_options)) if self.config.position_bias else None

    @property
    def _name(self) -> str:
        return f"{getattr(self.config, 'kind', type(self).__name__)} head"

    @property
    def n_train(self) -> int:
        """Training questions N for the 1/N weight of prior terms."""
        n = self.config.n_train
        if n is None:
            raise ValueError(
                f"{self._name}: n_train is unset; pass it in the head config or call "
                "head.set_n_train(number of training questions) before computing the loss"
            )
        return n

    def set_n_train(self, n: int) -> None:
        self.config = self.config.model_copy(update={"n_train": int(n)})

    def check_inputs(self, features: Tensor, counts: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """Validated ``features`` (N, d) and ``counts`` (Q,) (on the features' device); with a
        position bias, no question may have more than ``max_options`` options."""
        features = check_features(features, self.in_features, self._name)
        counts = check_counts(counts, features.shape[0], self._name).to(features.device)
        if self.position_bias is not None and int(counts.max()) > self.max_options:
            raise ValueError(
                f"{self._name}: a question has {int(counts.max())} options but the position bias covers "
                f"{self.max_options}; build the head with max_options >= {int(counts.max())}"
            )
        return features, counts

    def offsets(self, counts: Tensor) -> Tensor | None:
        """b_k of every option row, (N,), or None without a position bias."""
        if self.position_bias is None:
            return None
        return self.position_bias[option_positions(counts)]

    @abstractmethod
    def loss(self, features: Tensor, counts: Tensor | list[int], targets: Tensor) -> LossTerms:
        """The per-question training objective on a mini-batch of Q questions."""

    @abstractmethod
    def predict(
        self,
        features: Tensor,
        counts: Tensor | list[int],
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> OptionPredictive:
        """The predictive over each question's options."""

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, max_options={self.max_options}"
