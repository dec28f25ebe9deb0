"""Options shared by the manifold-aware Adam optimizers (``riemannian_adam``, ``landing``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, NonNegativeFloat, PositiveFloat

from bayeshead.config import ComponentConfig
from bayeshead.search_space import LogUniform, SearchSpace

__all__ = ["ManifoldAdamConfig"]


class ManifoldAdamConfig(ComponentConfig):
    """Adam hyper-parameters; Euclidean groups get decoupled (AdamW) weight decay."""

    search_space: ClassVar[SearchSpace] = {
        "optimizer.lr": LogUniform(low=1e-5, high=1e-2),
        "optimizer.stiefel_lr": LogUniform(low=1e-4, high=1e-1),
    }

    lr: PositiveFloat = Field(1e-3, description="Learning rate (all groups unless stiefel_lr is set).")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = Field(
        0.0, description="Decoupled (AdamW) weight decay of the Euclidean parameters only."
    )
    stiefel_lr: PositiveFloat | None = Field(
        None, description="Learning rate of the Stiefel factors (None: use lr)."
    )
