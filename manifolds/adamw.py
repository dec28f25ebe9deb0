"""The ``"adamw"`` optimizer factory: AdamW (Loshchilov & Hutter 2019) for Euclidean parameters.

Stiefel-tagged parameters are refused: AdamW would walk them off the manifold. Pass
``treat_stiefel_as_euclidean=True`` to train them as free matrices on purpose (an ablation).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat

from bayeshead.config import ComponentConfig
from bayeshead.errors import UserInputError
from bayeshead.manifolds.geometry import ParamGroup
from bayeshead.registry import OPTIMIZERS
from bayeshead.search_space import LogUniform, SearchSpace

__all__ = ["AdamWConfig", "build_adamw"]


class AdamWConfig(ComponentConfig):
    kind: Literal["adamw"] = "adamw"
    search_space: ClassVar[SearchSpace] = {"optimizer.lr": LogUniform(low=1e-5, high=1e-2)}
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    treat_stiefel_as_euclidean: bool = Field(
        False, description="Allow Stiefel factors and update them as unconstrained matrices."
    )


def _plain_groups(groups: list[ParamGroup]) -> list[dict]:
    """Drop the bookkeeping keys torch optimizers do not take."""
    return [{k: v for k, v in g.items() if k not in ("geometry", "names")} for g in groups]


@OPTIMIZERS.register("adamw", config=AdamWConfig)
def build_adamw(groups: list[ParamGroup], config: AdamWConfig | None = None) -> torch.optim.AdamW:
    """AdamW for Euclidean parameters; refuses Stiefel factors unless told to treat them as free."""
    config = config or AdamWConfig()
    stiefel = [n for g in groups if g.get("geometry") == "stiefel" for n in g.get("names", ["?"])]
    if stiefel and not config.treat_stiefel_as_euclidean:
        raise UserInputError(
            f"adamw received Stiefel-constrained parameters {stiefel[:5]}; AdamW would leave the "
            "manifold. Use optimizer kind 'riemannian_adam' or 'landing', or set "
            "treat_stiefel_as_euclidean=true to train them as free matrices."
        )
    return torch.optim.AdamW(
        _plain_groups(groups),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
