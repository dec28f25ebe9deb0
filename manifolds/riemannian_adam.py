"""The ``"riemannian_adam"`` optimizer factory: one optimizer for Stiefel and Euclidean tensors.

* Stiefel parameters: Riemannian Adam (Bécigneul & Ganea 2019) exactly as
  ``geoopt.optim.RiemannianAdam`` computes it on ``geoopt.EuclideanStiefel``: the Euclidean
  gradient G is projected to the tangent space, rgrad = G − X·sym(XᵀG); Adam moments are
  accumulated on rgrad; the step −lr·m̂/(√v̂ + eps) is retracted with the QR retraction
  (signs fixed so diag(R) > 0) and the first moment is transported by projection onto the new
  tangent space. Cost O(k r²) per k×r factor. No weight decay: on the manifold the projected
  L2 term X is zero anyway (geoopt's ``weight_decay`` does nothing there).
* Euclidean parameters: AdamW (Loshchilov & Hutter 2019) with *decoupled* weight decay, the same
  numbers as ``torch.optim.AdamW`` step for step. (geoopt's ``weight_decay`` is the coupled L2
  penalty of ``torch.optim.Adam`` and adds it to ``.grad`` in place; it is not used here.)

The optimizer is a subclass of ``geoopt.optim.RiemannianAdam``; its ``state_dict()`` /
``load_state_dict()`` are torch's and resume exactly.
"""

from __future__ import annotations

from typing import Any, Literal

import geoopt
import torch
from pydantic import Field, PositiveInt

from bayeshead.errors import UserInputError
from bayeshead.manifolds._adamw_step import adamw_update, init_adam_state
from bayeshead.manifolds._groups import param_geometry, torch_groups
from bayeshead.manifolds.adam_config import ManifoldAdamConfig
from bayeshead.manifolds.geometry import ParamGroup
from bayeshead.registry import OPTIMIZERS

__all__ = ["RiemannianAdamConfig", "RiemannianAdamW", "build_riemannian_adam"]

_STIEFEL = geoopt.EuclideanStiefel()


class RiemannianAdamConfig(ManifoldAdamConfig):
    kind: Literal["riemannian_adam"] = "riemannian_adam"
    stabilize: PositiveInt | None = Field(
        None,
        description="Every this many steps, project Stiefel factors back onto the manifold "
        "(polar decomposition) against round-off drift; None never does.",
    )


def _manifold_of(param: torch.Tensor) -> geoopt.Manifold:
    manifold = getattr(param, "manifold", None)
    if manifold is not None and "stiefel" in type(manifold).__name__.lower():
        return manifold
    return _STIEFEL


class RiemannianAdamW(geoopt.optim.RiemannianAdam):
    """Riemannian Adam on Stiefel parameters, AdamW on Euclidean ones, in one optimizer.

    Parameter groups may carry ``geometry`` (``"stiefel"`` / ``"euclidean"``); without it a
    parameter's geometry is read from its geoopt manifold. ``amsgrad`` is not supported."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        stabilize: int | None = None,
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, stabilize=stabilize
        )

    @torch.no_grad()
    def _stiefel_update(self, point: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        manifold = _manifold_of(point)
        state = self.state[point]
        init_adam_state(state, point)
        beta1, beta2 = group["betas"]
        state["step"] = int(state["step"]) + 1
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        rgrad = manifold.egrad2rgrad(point, grad)
        exp_avg.mul_(beta1).add_(rgrad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).add_(manifold.component_inner(point, rgrad), alpha=1 - beta2)
        bias_correction1 = 1 - beta1 ** state["step"]
        bias_correction2 = 1 - beta2 ** state["step"]
        denom = exp_avg_sq.div(bias_correction2).sqrt_().add_(group["eps"])
        direction = exp_avg.div(bias_correction1) / denom
        new_point, new_exp_avg = manifold.retr_transp(point, -group["lr"] * direction, exp_avg)
        point.copy_(new_point)
        exp_avg.copy_(new_exp_avg)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group.get("amsgrad"):
                raise UserInputError("RiemannianAdamW does not support amsgrad=True; set it to False")
            stabilize_now = False
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("RiemannianAdamW does not support sparse gradients")
                if param_geometry(group, param) == "stiefel":
                    self._stiefel_update(param, param.grad, group)
                    every = group.get("stabilize")
                    if every is not None and self.state[param]["step"] % every == 0:
                        stabilize_now = True
                else:
                    adamw_update(
                        param,
                        param.grad,
                        self.state[param],
                        lr=group["lr"],
                        betas=group["betas"],
                        eps=group["eps"],
                        weight_decay=group["weight_decay"],
                    )
            if stabilize_now:
                self.stabilize_group(group)
        return loss

    @torch.no_grad()
    def stabilize_group(self, group: dict[str, Any]) -> None:
        """Project the group's Stiefel parameters onto the manifold and their first moment
        onto the tangent space."""
        for param in group["params"]:
            state = self.state[param]
            if not state or param_geometry(group, param) != "stiefel":
                continue
            manifold = _manifold_of(param)
            param.copy_(manifold.projx(param))
            state["exp_avg"].copy_(manifold.proju(param, state["exp_avg"]))


@OPTIMIZERS.register("riemannian_adam", config=RiemannianAdamConfig)
def build_riemannian_adam(
    groups: list[ParamGroup], config: RiemannianAdamConfig | None = None
) -> RiemannianAdamW:
    """Riemannian Adam (geoopt) on Stiefel factors + AdamW on Euclidean tensors, one optimizer."""
    config = config or RiemannianAdamConfig()
    return RiemannianAdamW(
        torch_groups(groups, stiefel_lr=config.stiefel_lr),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        stabilize=config.stabilize,
    )
