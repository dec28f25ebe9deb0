"""Optimizers of the two training blocks, built from parameter geometry.

* head block: Adam without weight decay on the head's (variational) parameters;
* adapter block: the configured optimizer (``riemannian_adam``, ``landing``, ``adamw``, or a
  plugin) over the trainable backbone parameters, grouped by the geometry adapters declare;
* joint mode: the configured optimizer over both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bayeshead.manifolds.geometry import ParamGroup, group_by_geometry
from bayeshead.registry import OPTIMIZERS

if TYPE_CHECKING:
    from bayeshead.model import BayesianModel

__all__ = ["parameter_groups", "build_optimizer", "build_head_optimizer", "base_lr"]


def _declared(module: nn.Module, attribute: str) -> dict[str, Any]:
    """What the submodules' ``attribute()`` (``parameter_geometry``, ``parameter_lr_scale``)
    declare, keyed by parameter name relative to ``module``."""
    out: dict[str, Any] = {}
    for module_name, sub in module.named_modules():
        declare = getattr(sub, attribute, None)
        if callable(declare):
            for name, value in declare().items():
                out[f"{module_name}.{name}" if module_name else name] = value
    return out


def parameter_groups(module: nn.Module, exclude: Iterable[nn.Parameter] = ()) -> list[ParamGroup]:
    """Trainable parameters of ``module`` (but those in ``exclude``) grouped by geometry
    (adapters declare theirs), then by learning-rate factor: parameters an adapter asks to train
    at ``factor`` × the group's lr (:meth:`~bayeshead.adapters.base.Adapter.parameter_lr_scale`)
    form their own group carrying ``lr_scale``."""
    skip = {id(p) for p in exclude}
    named = [(n, p) for n, p in module.named_parameters() if id(p) not in skip]
    scale = {name: float(f) for name, f in _declared(module, "parameter_lr_scale").items()}
    groups: list[ParamGroup] = []
    for group in group_by_geometry(named, _declared(module, "parameter_geometry")):
        factors = sorted({scale.get(name, 1.0) for name in group["names"]})
        for factor in factors:
            pairs = [(n, p) for n, p in zip(group["names"], group["params"], strict=True) if scale.get(n, 1.0) == factor]
            part: ParamGroup = {"params": [p for _, p in pairs], "names": [n for n, _ in pairs], "geometry": group["geometry"]}
            if factor != 1.0:
                part["lr_scale"] = factor
            groups.append(part)
    return groups


def _apply_lr_scale(groups: list[ParamGroup], config: object) -> None:
    """Give each group with ``lr_scale`` its own lr: the factor × the optimizer's ``lr`` (or its
    ``stiefel_lr`` for a Stiefel group, when set)."""
    for group in groups:
        factor = group.pop("lr_scale", None)
        if factor is None:
            continue
        stiefel_lr = getattr(config, "stiefel_lr", None)
        stiefel = group.get("geometry") == "stiefel" and stiefel_lr is not None
        base = stiefel_lr if stiefel else getattr(config, "lr", 1e-3)
        group["lr"] = float(base) * factor


def build_optimizer(
    model: BayesianModel, module: nn.Module | None = None, exclude: Iterable[nn.Parameter] = ()
) -> torch.optim.Optimizer | None:
    """The configured optimizer over the trainable parameters of ``module`` (but ``exclude``);
    None when nothing there is trainable. Without ``module`` (joint mode): the backbone's groups
    plus one Euclidean group for the head at ``training.head_lr`` (when set)."""
    exclude = list(exclude)
    skip = {id(p) for p in exclude}
    if module is not None:
        groups = parameter_groups(module, exclude)
    else:
        groups = parameter_groups(model.backbone, exclude)
        head = [(n, p) for n, p in model.head.named_parameters() if p.requires_grad and id(p) not in skip]
        if head:
            group: ParamGroup = {
                "params": [p for _, p in head],
                "names": [f"head.{n}" for n, _ in head],
                "geometry": "euclidean",
            }
            if model.config.training.head_lr is not None:
                group["lr"] = model.config.training.head_lr
            groups.append(group)
    if not groups:
        return None
    config = model.config.optimizer
    _apply_lr_scale(groups, config)
    return OPTIMIZERS.create(config.kind, groups, config)


def base_lr(model: BayesianModel) -> float:
    """The configured optimizer's learning rate (1e-3 for an optimizer config without ``lr``)."""
    return float(getattr(model.config.optimizer, "lr", 1e-3))


def build_head_optimizer(model: BayesianModel, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, no weight decay, at ``training.head_lr`` (default: the optimizer's lr)."""
    lr = model.config.training.head_lr or base_lr(model)
    return torch.optim.Adam(list(params), lr=lr, weight_decay=0.0)
