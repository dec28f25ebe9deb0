"""What a whole-model method adds to the trainer's loop: :class:`TrainingHooks`.

The trainer minimises the head's loss (alternating or joint). A method whose posterior lives in
the adapters adds terms to the adapter (or joint) objective -- BLoB's KL(q(A) ‖ p(A)) / N, for
example -- and may score validation data with its own predictive. Hooks keep that out of the
heads (which see features only) and out of the trainer's code (which knows no method).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

__all__ = ["TrainingHooks", "StepInfo"]


@dataclass(frozen=True)
class StepInfo:
    """Where a training step sits: ``step`` (0-based) of ``total_steps``; ``step_in_epoch``
    (0-based) of ``steps_per_epoch``; the learning-rate multiplier of the schedule."""

    step: int
    total_steps: int
    step_in_epoch: int
    steps_per_epoch: int
    lr_multiplier: float


@dataclass
class TrainingHooks:
    """Optional additions to :class:`~bayeshead.training.Trainer`.

    * ``regularizer(info: StepInfo) -> {name: scalar}``: terms added to the
      adapter block's loss (or the joint loss), already scaled per example; logged by name.
    * ``exclude``: trainable parameters the trainer's optimizers must leave alone (a method steps
      them itself in ``after_step``).
    * ``after_step(info: StepInfo) -> {name: float}``: runs after each optimizer
      step (e.g. a separate optimizer on a KL term); its numbers join the step's log row.
    * ``validation_predict(texts, generator) -> Predictive``: the predictive that scores the
      validation data during training (default: the model's one-pass ``predict``).
    * ``train_context()``: a context manager around each training step's forward and backward
      (e.g. switch Bayesian-LoRA sampling on); validation and the post-hoc stage run outside it.
    * ``checkpointable``: False when the method keeps state the checkpoints do not hold, so
      ``training.checkpoint_every`` is refused rather than resumed inexactly.
    """

    regularizer: Callable[[StepInfo], dict[str, Tensor]] | None = None
    exclude: Sequence[nn.Parameter] = field(default_factory=tuple)
    after_step: Callable[[StepInfo], dict[str, float]] | None = None
    validation_predict: Callable[..., Any] | None = None
    train_context: Callable[[], Any] | None = None
    checkpointable: bool = True
