"""The interface of per-option (multiple-choice) heads.

A per-option head scores every answer option with the same parameters: option k of question q,
with features h_{q,k} ∈ R^d (the option's own sequence through the backbone), gets the logit

    z_{q,k} = wᵀ h_{q,k} (+ b_k),

with one parameter vector w shared by all options and questions, and an optional point-estimated
bias b_k per position k < K (``position_bias``; K = ``max_options``). The probability of option k
is the softmax over the question's own n_q options (:mod:`bayeshead.heads.option_scoring`), so
questions with 2, 3, 4 or 5 options mix in one batch without padding classes or masks.

Two input layouts, the same numbers:

* the registry contract (``loss(features, targets)``, ``predict(features)``, what the trainer,
  the methods and the evaluation loop call): ``features`` (Q, K, d) per question, NaN rows after
  each question's n_q options (:mod:`bayeshead.backbones.option_groups`), ``targets`` (Q,);
  ``predict`` returns a :class:`~bayeshead.types.CategoricalPredictive` over ``max_options``
  columns with probability exactly 0 on the options a question lacks;
* flat (``loss_flat``, ``predict_flat``): ``features`` (N, d) for the N = Σ_q n_q option rows in
  question order, ``counts`` (Q,), ``targets`` (Q,); ``predict_flat`` returns an
  :class:`~bayeshead.heads.option_scoring.OptionPredictive`.

``num_outputs`` is ``max_options`` K, the most options a question may have (the column count of
the padded predictive).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from bayeshead.backbones.option_groups import unpad_option_features
from bayeshead.errors import UserInputError
from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_features
from bayeshead.heads.option_scoring import OptionPredictive, check_counts, option_positions
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["OptionHead", "OptionHeadConfig"]


class OptionHeadConfig(HeadConfig):
    """Fields every per-option head has (``n_train`` = the number of training *questions*)."""

    position_bias: bool = Field(
        False, description="Add a point-estimated logit offset b_k for each option position k < max_options."
    )


class OptionHead(UncertaintyHead):
    """Base of per-option heads: both input layouts, validation of (features, counts, targets),
    the position bias. Subclasses implement :meth:`loss_flat` and :meth:`predict_flat`."""

    Config: ClassVar[type[OptionHeadConfig]] = OptionHeadConfig
    task_type: ClassVar[str] = "multiple_choice"

    def __init__(self, in_features: int, max_options: int, config: Any = None) -> None:
        if max_options < 2:
            raise UserInputError(
                f"{type(self).__name__}: max_options is the most options a question may have (at least 2), "
                f"got {max_options}"
            )
        super().__init__(in_features, max_options, config)
        self.position_bias = nn.Parameter(torch.zeros(self.max_options)) if self.config.position_bias else None

    @property
    def max_options(self) -> int:
        """K, the most options a question may have (= ``num_outputs``)."""
        return self.num_outputs

    @property
    def _name(self) -> str:
        return f"{getattr(self.config, 'kind', type(self).__name__)} head"

    def check_inputs(self, features: Tensor, counts: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """Validated ``features`` (N, d) and ``counts`` (Q,) (on the features' device); with a
        position bias, no question may have more than ``max_options`` options."""
        features = check_features(features, self.in_features, self._name)
        counts = check_counts(counts, features.shape[0], self._name).to(features.device)
        if self.position_bias is not None and int(counts.max()) > self.max_options:
            raise UserInputError(
                f"{self._name}: a question has {int(counts.max())} options but the position bias covers "
                f"{self.max_options}; build the head with max_options >= {int(counts.max())}"
            )
        return features, counts

    def offsets(self, counts: Tensor) -> Tensor | None:
        """b_k of every option row, (N,), or None without a position bias."""
        if self.position_bias is None:
            return None
        return self.position_bias[option_positions(counts)]

    def unpad(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Padded (Q, K', d) option features → flat real rows (N, d) and counts (Q,), K' ≤ K."""
        if not isinstance(features, Tensor) or features.dim() != 3 or features.shape[-1] != self.in_features:
            got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise UserInputError(
                f"{self._name}: expected option features of shape (questions, options <= {self.max_options}, "
                f"{self.in_features}), got {got}; feed multiple-choice data as option groups (a tuple of option "
                "texts per question), or call loss_flat/predict_flat with flat features and counts"
            )
        if features.shape[1] > self.max_options:
            raise UserInputError(
                f"{self._name}: a batch has {features.shape[1]} option slots but the head scores at most "
                f"{self.max_options}; build it with num_outputs (max_options) >= the most options of any question"
            )
        return unpad_option_features(features, self._name)

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """The per-question objective on padded option features (Q, K', d) and targets (Q,)."""
        flat, counts = self.unpad(features)
        return self.loss_flat(flat, counts, targets)

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """The predictive on padded option features (Q, K', d): (Q, max_options) probabilities,
        exactly 0 on the options a question does not have."""
        flat, counts = self.unpad(features)
        return self.predict_flat(flat, counts, n_samples=n_samples, generator=generator).padded(self.max_options)

    @abstractmethod
    def loss_flat(self, features: Tensor, counts: Tensor | list[int], targets: Tensor) -> LossTerms:
        """The per-question training objective on flat option rows (N, d) of Q questions."""

    @abstractmethod
    def predict_flat(
        self,
        features: Tensor,
        counts: Tensor | list[int],
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> OptionPredictive:
        """The predictive over each question's options, from flat option rows (N, d)."""

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, max_options={self.max_options}"
