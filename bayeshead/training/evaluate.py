"""Evaluation passes used during and after training: cached features and validation NLL."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bayeshead.training.distributed import DistContext

if TYPE_CHECKING:
    from bayeshead.data import TextDataset
    from bayeshead.model import BayesianModel

__all__ = ["collect_features", "evaluate_nll"]


@torch.no_grad()
def collect_features(model: BayesianModel, data: TextDataset, batch_size: int | None = None) -> Tensor:
    """Backbone features (N, d) of every example, in data order, in eval mode (no dropout); for
    option groups (multiple choice) (Q, K, d), each batch's NaN option padding widened to the
    largest K of the data set."""
    batch_size = batch_size or model.config.evaluation.batch_size
    was_training = model.training
    model.eval()
    try:
        parts = [model.features(batch.texts, batch.text_pair) for batch in data.batches(batch_size)]
    finally:
        model.train(was_training)
    if parts[0].dim() == 3:
        k = max(part.shape[1] for part in parts)
        parts = [torch.nn.functional.pad(part, (0, 0, 0, k - part.shape[1]), value=float("nan")) for part in parts]
    return torch.cat(parts)


@torch.no_grad()
def evaluate_nll(
    model: BayesianModel,
    data: TextDataset,
    ctx: DistContext | None = None,
    seed: int = 0,
    predict: Callable[..., Any] | None = None,
) -> float:
    """Mean predictive NLL over ``data`` of the model being trained (``predict(texts,
    generator=...)``, with ``text_pair=...`` for paired data; default ``model.predict``): summed
    per example and divided by N (never a mean of batch means). Under DDP each rank scores a
    slice and the sums are all-reduced. Regression NLL is in the targets' own units.

    It runs inside the head's :meth:`~bayeshead.heads.base.UncertaintyHead.training_predictive`:
    a head whose predictive needs its post-hoc fit (Laplace, temperature) is scored with its MAP
    network while training, where predicting outside the trainer would refuse."""
    ctx = ctx or DistContext()
    index = torch.tensor_split(torch.arange(len(data)), ctx.world_size)[ctx.rank]
    part = data.subset(index) if ctx.enabled else data
    generator = torch.Generator().manual_seed(seed)
    predict = predict or model.predict
    total = 0.0
    with model.head.training_predictive():
        for batch in part.batches(model.config.evaluation.batch_size):
            pairs = {} if batch.text_pair is None else {"text_pair": batch.text_pair}
            predictive = predict(batch.texts, generator=generator, **pairs)
            total += float(predictive.nll(batch.labels).sum())
    total, count = ctx.all_reduce_sum([total, len(part)])
    return total / count
