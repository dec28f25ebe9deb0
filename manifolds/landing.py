"""The ``"landing"`` optimizer factory (Ablin & Peyré 2022, as used by PoLAR, Lion et al. 2025).

For a Stiefel factor X ∈ R^{k×r} with Euclidean gradient G the landing field is

    Λ(X) = skew(G·Xᵀ)·X + λ·X·(XᵀX − I),   skew(M) = ½(M − Mᵀ),

computed as ½(G·(XᵀX) − X·(GᵀX)) + λ·X·(XᵀX − I) — O(k r²), never a k×k matrix. The first term
is a Riemannian-gradient-like direction (it is tangent to the "orbit" of X), the second pulls X
back towards St(k, r). Λ replaces the gradient and an AdamW step is taken on it (Stiefel
factors get no weight decay). There is no retraction: X stays close to, not on, the manifold;
log :func:`~bayeshead.manifolds.stiefel.orthogonality_error` to watch it.

Adam's per-coordinate normalisation breaks the exact tangency of the first term, so X drifts
until the attraction balances it: the distance settles around O(‖G‖/λ) (Adam is blind to the
overall scale, only the ratio matters). Measured (tests/test_manifolds_landing.py): for losses
with gradient scale 1e-2, λ = 1, lr = 1e-3, ε(X) ≤ 0.04·√r over 200 steps; with the PoLAR
default λ below and large gradients ε can reach O(1) — raise λ if the logged ε grows.

We keep the ½ of skew. The PoLAR reference code omits it, i.e. uses G·XᵀX − X·GᵀX + λ_ref·(…).
Adam is invariant to a global scale of its input (up to ``eps``), so our λ equals λ_ref / 2:
the default λ = 2.5e-3 reproduces the reference's λ_ref = 5e-3. Euclidean parameters get plain
AdamW (decoupled weight decay), identical to ``torch.optim.AdamW``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeFloat
from torch import Tensor

from bayeshead.manifolds._adamw_step import adamw_update
from bayeshead.manifolds._groups import param_geometry, torch_groups
from bayeshead.manifolds.adam_config import ManifoldAdamConfig
from bayeshead.manifolds.geometry import ParamGroup
from bayeshead.registry import OPTIMIZERS

__all__ = ["LandingConfig", "LandingAdamW", "landing_field", "build_landing"]

DEFAULT_PENALTY = 2.5e-3


def landing_field(x: Tensor, grad: Tensor, penalty: float) -> Tensor:
    """Λ(X) = ½(G(XᵀX) − X(GᵀX)) + λ·X(XᵀX − I) for X, G ∈ R^{k×r} (batched over leading dims)."""
    if x.shape != grad.shape or x.dim() < 2:
        raise ValueError(
            f"landing_field expects X and G of the same (…, k, r) shape, got {tuple(x.shape)} "
            f"and {tuple(grad.shape)}"
        )
    xt = x.transpose(-1, -2)
    gram = xt @ x  # r×r
    rel = 0.5 * (grad @ gram - x @ (grad.transpose(-1, -2) @ x))
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return rel + penalty * (x @ (gram - eye))


class LandingConfig(ManifoldAdamConfig):
    kind: Literal["landing"] = "landing"
    penalty: NonNegativeFloat = Field(
        DEFAULT_PENALTY,
        description="λ, the weight of the attraction term λ·X(XᵀX − I) of the landing field "
        "(with the ½ of skew kept; the PoLAR reference's λ_ref = 2λ).",
    )


class LandingAdamW(torch.optim.Optimizer):
    """AdamW whose Stiefel parameters take their step on the landing field instead of the
    gradient (Ablin & Peyré 2022). Groups may carry ``geometry`` and ``penalty``."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        penalty: float = DEFAULT_PENALTY,
    ) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or penalty < 0:
            raise ValueError(
                f"LandingAdamW needs lr > 0, eps > 0, weight_decay >= 0, penalty >= 0; got "
                f"lr={lr}, eps={eps}, weight_decay={weight_decay}, penalty={penalty}"
            )
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, penalty=penalty)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("LandingAdamW does not support sparse gradients")
                stiefel = param_geometry(group, param) == "stiefel"
                grad = landing_field(param, param.grad, group["penalty"]) if stiefel else param.grad
                adamw_update(
                    param,
                    grad,
                    self.state[param],
                    lr=group["lr"],
                    betas=group["betas"],
                    eps=group["eps"],
                    weight_decay=0.0 if stiefel else group["weight_decay"],
                )
        return loss


@OPTIMIZERS.register("landing", config=LandingConfig)
def build_landing(groups: list[ParamGroup], config: LandingConfig | None = None) -> LandingAdamW:
    """Landing field + AdamW on Stiefel factors (no retraction), AdamW on Euclidean tensors."""
    config = config or LandingConfig()
    return LandingAdamW(
        torch_groups(groups, stiefel_lr=config.stiefel_lr),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        penalty=config.penalty,
    )
