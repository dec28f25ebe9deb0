"""Fit any head on a feature matrix, with the trainer's options: :func:`fit_head_on_features`.

Features may come from anywhere: a frozen backbone's cached last layer (``backbone.cache_prefix``
with no adapter), embeddings a user already has, another library. The features are wrapped in a
:class:`FeatureTable` backbone whose "texts" are row numbers, so the very same
:class:`~bayeshead.training.Trainer` runs: mini-batches, head steps, learning-rate schedule,
gradient clipping, validation NLL, early stopping, the head's post-hoc fit (Laplace, temperature)
and the +LA refinement all behave as in :meth:`BayesianModel.fit <bayeshead.model.BayesianModel.fit>`.

    fit = fit_head_on_features({"kind": "vbll_classification"}, features, labels,
                               training=TrainingConfig(epochs=20, batch_size=64), val=(val_x, val_y))
    fit.head.predict(test_x)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bayeshead.backbones.base import Backbone
from bayeshead.config import (
    DEFAULT_HEAD,
    ComponentConfig,
    EvaluationConfig,
    ExperimentConfig,
    TrainingConfig,
    resolve_component,
)
from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.base import UncertaintyHead
from bayeshead.registry import HEADS, REGISTRIES

__all__ = ["FeatureTable", "FeatureFit", "fit_head_on_features"]


class FeatureTable(Backbone):
    """A backbone over a fixed (N, d) feature matrix: the "text" of row i is ``str(i)``."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        if table.dim() != 2:
            raise UserInputError(f"features must be a (N, d) matrix, got shape {tuple(table.shape)}")
        if not table.is_floating_point():
            raise InputTypeError(f"features must be floating point, got {table.dtype}")
        self.table = table.detach()

    @property
    def feature_dim(self) -> int:
        return int(self.table.shape[1])

    @property
    def device(self) -> torch.device:
        return self.table.device

    def tokenize(self, texts: Sequence[str], text_pair: Sequence[str] | None = None) -> dict[str, Tensor]:
        if text_pair is not None:
            raise InputTypeError("a FeatureTable has one feature row per example; it takes no text pairs")
        return {"rows": torch.tensor([int(t) for t in texts], dtype=torch.long)}

    def features(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self.table[batch["rows"].to(self.table.device)]


@dataclass
class FeatureFit:
    """What :func:`fit_head_on_features` returns: the trained head, the trainer's log, the post-hoc fit."""

    head: UncertaintyHead
    history: list[dict[str, float]]
    posthoc: dict[str, float]


def _as_tensor(value: Any, what: str) -> Tensor:
    tensor = value if isinstance(value, Tensor) else torch.as_tensor(value)
    if tensor.numel() == 0:
        raise UserInputError(f"{what} is empty")
    return tensor


def _num_outputs(targets: Tensor, val_targets: Tensor | None) -> int:
    if targets.is_floating_point():
        return 1 if targets.dim() == 1 else int(targets.shape[1])
    top = int(targets.max()) if val_targets is None else max(int(targets.max()), int(val_targets.max()))
    return top + 1


def fit_head_on_features(
    head: UncertaintyHead | ComponentConfig | Mapping[str, Any] | None,
    features: Tensor,
    targets: Tensor,
    *,
    training: TrainingConfig | None = None,
    val: tuple[Tensor, Tensor] | None = None,
    optimizer: ComponentConfig | Mapping[str, Any] | None = None,
    evaluation: EvaluationConfig | None = None,
    num_outputs: int | None = None,
) -> FeatureFit:
    """Train ``head`` (a head, a head config, a ``{"kind": ...}`` mapping, or None for the default head)
    on ``features`` (N, d) and ``targets`` (int class labels (N,), or float regression targets (N,)
    or (N, k)) with the trainer's ``training`` options, validating on ``val = (features, targets)``.
    A head built here gets ``num_outputs`` (default: inferred from the targets) and the features'
    device and dtype. The head is trained in place and returned in the :class:`FeatureFit`."""
    from bayeshead.data import TextDataset
    from bayeshead.model import BayesianModel
    from bayeshead.training.trainer import Trainer

    features, targets = _as_tensor(features, "features"), _as_tensor(targets, "targets")
    if len(features) != len(targets):
        raise UserInputError(f"got {len(features)} feature rows but {len(targets)} targets; give one target per row")
    val_x, val_y = (None, None) if val is None else (_as_tensor(val[0], "val features"), _as_tensor(val[1], "val targets"))
    if val_x is not None and (val_x.dim() != 2 or val_x.shape[1] != features.shape[1] or len(val_x) != len(val_y)):
        raise UserInputError(
            f"val must be (features (M, {features.shape[1]}), targets (M,)), got shapes "
            f"{tuple(val_x.shape)} and {tuple(val_y.shape)}"
        )
    if not isinstance(head, UncertaintyHead):
        head_config = resolve_component(REGISTRIES["heads"], head if head is not None else {}, DEFAULT_HEAD)
        outputs = num_outputs if num_outputs is not None else _num_outputs(targets, val_y)
        head = HEADS.get(head_config.kind).from_config(head_config, features.shape[1], outputs)
        head = head.to(device=features.device, dtype=features.dtype)
    table = features if val_x is None else torch.cat([features, val_x.to(features)])
    config = ExperimentConfig(
        head=head.config,
        training=training or TrainingConfig(progress=False),
        evaluation=evaluation or EvaluationConfig(),
        **({"optimizer": optimizer} if optimizer is not None else {}),
    )
    model = BayesianModel(FeatureTable(table), head, config)
    n = len(features)
    train_data = TextDataset([str(i) for i in range(n)], targets, name="features")
    val_data = None
    if val_x is not None:
        val_data = TextDataset([str(n + i) for i in range(len(val_x))], val_y, name="val features")
    trainer = Trainer(model)
    history = trainer.fit(train_data, val_data)
    return FeatureFit(head, history, trainer.posthoc)
