"""The basic joint training loop behind :meth:`BayesianModel.fit`.

Per mini-batch: features from the backbone (without autograd when the backbone is frozen),
the head's :class:`~bayeshead.types.LossTerms`, one step of the configured optimizer over
head and adapter parameters (grouped by geometry). Seeded: the same config and data give the
same parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from bayeshead.manifolds.geometry import ParamGroup, group_by_geometry
from bayeshead.registry import OPTIMIZERS

if TYPE_CHECKING:
    from bayeshead.data import TextDataset
    from bayeshead.model import BayesianModel

__all__ = ["fit_model", "parameter_groups", "build_optimizer"]


def parameter_groups(model: BayesianModel) -> list[ParamGroup]:
    """Trainable parameters of ``model`` grouped by geometry (adapters declare theirs)."""
    geometry: dict[str, str] = {}
    for module_name, module in model.named_modules():
        declare = getattr(module, "parameter_geometry", None)
        if callable(declare):
            for name, tag in declare().items():
                geometry[f"{module_name}.{name}" if module_name else name] = tag
    return group_by_geometry(model.named_parameters(), geometry)


def build_optimizer(model: BayesianModel) -> torch.optim.Optimizer:
    config = model.config.optimizer
    return OPTIMIZERS.create(config.kind, parameter_groups(model), config)


def _check_data(model: BayesianModel, data: TextDataset, what: str) -> None:
    if len(data) == 0:
        raise ValueError(f"{what} data is empty")
    if model.head.task_type == "classification":
        top = int(data.labels.max())
        if top >= model.head.num_outputs:
            raise ValueError(
                f"{what} data has label {top} but the head predicts {model.head.num_outputs} classes"
            )


def fit_model(model: BayesianModel, train: TextDataset, val: TextDataset | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place; return per-step logs (loss parts, and val NLL per epoch)."""
    cfg = model.config.training
    _check_data(model, train, "training")
    if val is not None:
        _check_data(model, val, "validation")
    torch.manual_seed(cfg.seed)
    if model.head.config.n_train is None:
        model.head.set_n_train(len(train))
    optimizer = build_optimizer(model)
    order = torch.Generator().manual_seed(cfg.seed)
    trainable_backbone = model.has_trainable_backbone
    params = [p for g in optimizer.param_groups for p in g["params"]]
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        if not trainable_backbone:
            model.backbone.eval()  # frozen backbone: no dropout noise in its features
        bar = tqdm(
            train.batches(cfg.batch_size, shuffle=True, generator=order),
            total=-(-len(train) // cfg.batch_size),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=None if cfg.progress else True,  # None: off when not a terminal
            leave=False,
        )
        for texts, labels in bar:
            with torch.set_grad_enabled(trainable_backbone):
                features = model.features(texts)
            terms = model.head.loss(features, labels)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            step += 1
            row = {"epoch": float(epoch), "step": float(step), **terms.as_floats()}
            history.append(row)
            bar.set_postfix(loss=f"{row['total']:.4f}")
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        if val is not None:
            history[-1]["val_nll"] = evaluate_nll(model, val)
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
    model.eval()
    return history


@torch.no_grad()
def evaluate_nll(model: BayesianModel, data: TextDataset) -> float:
    """Mean predictive NLL over ``data`` (sample-weighted, not a mean of batch means)."""
    total = 0.0
    for texts, labels in data.batches(model.config.evaluation.batch_size):
        total += float(model.predict(texts).nll(labels).sum())
    return total / len(data)
