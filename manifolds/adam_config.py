"""Options shared by the manifold-aware Adam optimizers (``riemannian_adam``, ``landing``)."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveFloat

from bayeshead.config import ComponentConfig

__all__ = ["ManifoldAdamConfig"]


class ManifoldAdamConfig(ComponentConfig):
    """Adam hyper-parameters; Euclidean groups get decoupled (AdamW) weight decay."""

    lr: PositiveFloat = Field(1e-3, description="Learning rate (all groups unless stiefel_lr is set).")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = Field(
        0.0, description="Decoupled (AdamW) weight decay of the Euclidean parameters only."
    )
    stiefel_lr: PositiveFloat | None = Field(
        None, description="Learning rate of the Stiefel factors (None: use lr)."
    )
