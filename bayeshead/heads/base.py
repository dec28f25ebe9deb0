"""The :class:`UncertaintyHead` interface every head implements.

A head maps features ``(B, d)`` to a training objective (:class:`~bayeshead.types.LossTerms`)
and to a predictive distribution (:class:`~bayeshead.types.Predictive`). It never sees tokens.

To add a head: subclass, give it a pydantic ``Config`` (a :class:`HeadConfig` with a
``Literal`` ``kind``), and register it::

    @HEADS.register("my_head")
    class MyHead(UncertaintyHead):
        class Config(HeadConfig):
            kind: Literal["my_head"] = "my_head"
        ...
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from pydantic import PositiveInt
from torch import Tensor, nn

from bayeshead.config import ComponentConfig
from bayeshead.errors import InputTypeError, NotFittedError, UserInputError
from bayeshead.types import LossTerms, Predictive

__all__ = ["HeadConfig", "LateFittedFlag", "UncertaintyHead", "check_features", "check_class_targets"]


class HeadConfig(ComponentConfig):
    """Base of head configs. ``n_train`` (the KL weight is 1/n_train) is filled in by the
    trainer from the data when left unset."""

    n_train: PositiveInt | None = None


def check_features(features: Tensor, in_features: int, head: str) -> Tensor:
    """Validate a (B, d) float feature batch; return it as fp32 or wider (never half precision)."""
    if not isinstance(features, Tensor):
        raise InputTypeError(f"{head}: features must be a torch.Tensor of shape (batch, {in_features}), got {type(features).__name__}")
    if features.dim() != 2 or features.shape[1] != in_features:
        raise UserInputError(
            f"{head}: expected features of shape (batch, {in_features}), got {tuple(features.shape)}; "
            "the head's in_features must equal the backbone's feature width"
        )
    if not features.is_floating_point():
        raise InputTypeError(f"{head}: features must be floating point, got {features.dtype}")
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()
    if not torch.isfinite(features).all():
        bad = (~torch.isfinite(features)).any(dim=1).nonzero().flatten().tolist()
        raise UserInputError(f"{head}: features contain NaN or inf in rows {bad[:10]}; check the backbone dtype and inputs")
    return features


def check_class_targets(targets: Tensor, batch: int, num_classes: int, head: str) -> Tensor:
    """Validate integer class labels of shape (B,) in [0, C); return them as int64."""
    if not isinstance(targets, Tensor):
        raise InputTypeError(f"{head}: targets must be a torch.Tensor of class indices, got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise InputTypeError(f"{head}: targets must be integer class indices, got dtype {targets.dtype}")
    if targets.shape != (batch,):
        raise UserInputError(f"{head}: expected targets of shape ({batch},), got {tuple(targets.shape)}")
    if batch and (targets.min() < 0 or targets.max() >= num_classes):
        raise UserInputError(
            f"{head}: labels must lie in [0, {num_classes}), got values in "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    return targets.long()


class UncertaintyHead(nn.Module, ABC):
    """A probabilistic last layer on top of backbone features.

    Subclasses set ``Config`` and implement :meth:`loss` and :meth:`predict`. A head sees
    features and targets only: uncertainty that lives inside the backbone (MC dropout in the
    adapters, ensembles of adapters, Laplace over adapters, BLoB, TFB) is a whole-model method
    (:mod:`bayeshead.methods`), never a head reaching back into its model.
    """

    Config: ClassVar[type[HeadConfig]] = HeadConfig
    #: "classification" or "regression": what kind of targets the head takes.
    task_type: ClassVar[str] = "classification"
    #: what the trainer passes to :meth:`fit_posthoc` after training: cached features of the
    #: ``"train"`` data, of held-out ``"validation"`` data, or nothing (``"none"``).
    posthoc_data: ClassVar[str] = "none"

    def __init__(self, in_features: int, num_outputs: int, config: HeadConfig | None = None) -> None:
        super().__init__()
        if in_features <= 0 or num_outputs <= 0:
            raise UserInputError(
                f"{type(self).__name__}: in_features and num_outputs must be positive, got {in_features} and {num_outputs}"
            )
        if self.task_type == "classification" and num_outputs < 2:
            raise UserInputError(
                f"{type(self).__name__}: a classification head needs at least 2 classes, got num_outputs={num_outputs}; "
                "a 1-class classifier has nothing to learn (every probability is 1). Give num_outputs=data.num_classes "
                "(at least 2), or use a regression head for one real-valued target"
            )
        self.in_features = int(in_features)
        self.num_outputs = int(num_outputs)
        self.config = config if config is not None else self.Config()  # type: ignore[call-arg]
        self._training_predictive = False

    @classmethod
    def from_config(cls, config: HeadConfig, in_features: int, num_outputs: int) -> UncertaintyHead:
        """Build the head from its validated config section."""
        return cls(in_features, num_outputs, config)

    @property
    def n_train(self) -> int:
        """N_train for the 1/N weighting of prior terms; set it in the config or with ``set_n_train``."""
        n = self.config.n_train
        if n is None:
            raise UserInputError(
                f"{type(self).__name__}: n_train is unset; pass it in the head config or call "
                "head.set_n_train(len(train_data)) before computing the loss"
            )
        return n

    def set_n_train(self, n: int) -> None:
        self.config = self.config.model_copy(update={"n_train": int(n)})

    @abstractmethod
    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """The per-example training objective on a mini-batch."""

    @abstractmethod
    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Predictive:
        """The predictive distribution for a batch of features."""

    def fit_posthoc(self, features: Tensor, targets: Tensor, **kwargs: Any) -> dict[str, float]:
        """Post-hoc fitting on cached features (Laplace, temperature scaling); returns what it
        fitted, by name, for the training log (``{}``: a no-op, the default)."""
        return {}

    def upgrade_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A saved state_dict brought to this version's tensor names (defaults for tensors older
        saves lack); returned as it is by default."""
        return state

    @contextlib.contextmanager
    def training_predictive(self) -> Iterator[None]:
        """Within this block a head whose predictive needs its post-hoc fit (Laplace,
        temperature) predicts with its MAP network until that fit has run, instead of refusing:
        the predictive the trainer scores validation data with during training. Nests; restores
        the previous setting on exit. A no-op for heads without a post-hoc fit."""
        previous = getattr(self, "_training_predictive", False)
        self._training_predictive = True
        try:
            yield
        finally:
            self._training_predictive = previous

    def refuse_unfitted(self, needs: str, call: str) -> None:
        """Raise :class:`~bayeshead.errors.NotFittedError` (``predict`` before the post-hoc fit)
        unless inside :meth:`training_predictive`. ``needs``: what the predictive needs; ``call``:
        what fits it."""
        if getattr(self, "_training_predictive", False):
            return
        name = getattr(self.config, "kind", type(self).__name__)
        raise NotFittedError(
            f"{name} head: predict needs {needs}, which is fitted after training, but it has not been fitted; "
            f"call {call} first (BayesianModel.fit and the methods' fit run it after training). For the MAP "
            "network's predictive, predict inside `with head.training_predictive():`"
        )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_outputs={self.num_outputs}"


class LateFittedFlag:
    """Mixin for a post-hoc head whose ``fitted`` buffer came after its fitted tensor: a
    state_dict saved before the flag existed, but holding ``fitted_marker`` (the fitted tensor's
    name), loads as fitted. Put it before the head's base class."""

    fitted_marker: ClassVar[str]

    def upgrade_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Mark an older save that holds ``fitted_marker`` but no ``fitted`` flag as fitted."""
        if "fitted" not in state and self.fitted_marker in state:
            state = {**state, "fitted": torch.ones((), dtype=torch.bool)}
        return state

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        if prefix + "fitted" not in state_dict and prefix + self.fitted_marker in state_dict:
            state_dict[prefix + "fitted"] = torch.ones((), dtype=torch.bool)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]

