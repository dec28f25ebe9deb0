"""Training and prediction of a per-option head on a :class:`~bayeshead.model.BayesianModel`'s
backbone, question by question (the per-option formulation, :mod:`bayeshead.tasks.options`).

Each step takes a batch of whole questions (:meth:`OptionDataset.batches`, seeded by question),
runs the backbone once on all their option texts (features (N, d)), and minimises the per-option
head's loss (:mod:`bayeshead.heads.option_base`) with one Adam over the head and every trainable
backbone parameter (adapters, if the model has them; a frozen backbone gets no gradient). This
is the joint update only; the main :class:`~bayeshead.training.Trainer` (alternating updates,
Riemannian optimizers, checkpoints, early stopping) does not take per-option data yet.
"""

from __future__ import annotations

import torch

from bayeshead.data.choices import OptionDataset
from bayeshead.heads.option_base import OptionHead
from bayeshead.heads.option_scoring import OptionPredictive
from bayeshead.model import BayesianModel
from bayeshead.seeding import seed_everything

__all__ = ["fit_option_head", "predict_options"]


def fit_option_head(
    model: BayesianModel,
    head: OptionHead,
    train: OptionDataset,
    *,
    epochs: int = 1,
    batch_size: int = 8,
    lr: float = 1e-2,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Train ``head`` (and the model's trainable backbone parameters) on ``train``; return one log
    row per step (``step``, ``epoch`` and the loss parts). ``batch_size`` counts questions.
    ``head.n_train`` defaults to the number of training questions."""
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ValueError(f"fit_option_head: epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    if head.in_features != model.backbone.feature_dim:
        raise ValueError(
            f"fit_option_head: the head takes {head.in_features} features but the backbone gives "
            f"{model.backbone.feature_dim}; build the head with in_features=model.backbone.feature_dim"
        )
    if head.config.n_train is None:
        head.set_n_train(len(train))
    seed_everything(seed)
    body = [p for p in model.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([*head.parameters(), *body], lr=lr)
    model.train()
    head.train()
    log: list[dict[str, float]] = []
    for epoch in range(epochs):
        for batch in train.batches(batch_size, seed=seed, epoch=epoch):
            with torch.set_grad_enabled(bool(body)):
                features = model.features(batch.texts)
            terms = head.loss(features, batch.counts.to(features.device), batch.labels.to(features.device))
            optimizer.zero_grad()
            terms.total.backward()
            optimizer.step()
            log.append({"step": float(len(log) + 1), "epoch": float(epoch), **terms.as_floats()})
    model.eval()
    head.eval()
    return log


@torch.no_grad()
def predict_options(
    model: BayesianModel,
    head: OptionHead,
    data: OptionDataset,
    *,
    batch_size: int = 16,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> OptionPredictive:
    """The head's predictive for every question of ``data``, in dataset order (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        parts = []
        for batch in data.batches(batch_size, seed=None):
            features = model.features(batch.texts)
            parts.append(head.predict(features, batch.counts.to(features.device), n_samples=n_samples, generator=generator))
        return OptionPredictive.cat(parts)
    finally:
        model.train(was_training)
