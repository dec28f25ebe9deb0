"""The ``"landing"`` optimizer factory: Adam-preconditioned landing with the safe step (Ablin &
Peyré 2022; Ablin, Vary, Gao & Absil 2023; the optimizer family of PoLAR, Lion et al. 2025).

For a Stiefel factor X ∈ R^{k×r} and a direction D ∈ R^{k×r} the landing field is

    Λ(X; D) = skew(D·Xᵀ)·X + λ·X·(XᵀX − I),   skew(M) = ½(M − Mᵀ),

computed as ½(D·(XᵀX) − X·(DᵀX)) + λ·X·(XᵀX − I) — O(k r²), never a k×k matrix. One step:

1. Adam moments on the relative gradient R = skew(G·Xᵀ)·X of the Euclidean gradient G:
   m ← β₁m + (1 − β₁)R, v ← β₂v + (1 − β₂)R², D = m̂ / (√v̂ + eps) (bias-corrected);
2. the field is formed *from the Adam direction*, Λ = Λ(X; D), so its first term is exactly
   of the form Ψ·X with Ψ skew and moves X tangentially to first order;
3. X ← X − η·Λ with η = min(lr, η_max), η_max the safe step of
   :func:`~bayeshead.manifolds.landing_safe_step.safe_step_size` for ε = ``max_distance``.

Guarantee: starting within ε of St(k, r) (``random_stiefel`` starts at ~1e-7), every step keeps
‖XᵀX − I‖_F ≤ ε, whatever the gradient scale, k, r or lr (up to float round-off). The price:
when a step of size lr would leave the ε-tube, the step is shortened. D has entries of order 1
at most (Adam's normalisation), the second-order drift of a step is η²‖ΛᵀΛ‖_F ≲ η²·k√r/4 and the
attraction removes about 2ηλ of the distance per step, so the distance settles near
η·k√r/(8λ) at most: with λ = 100 and lr = 1e-3, 3.8e-3 at 768×16 and 1.4e-2 at 4096×8 (where
the safeguard then shortens the step). Measured over 2,000 steps (scripts as in
tests/test_manifolds_landing.py; docs/concepts.md) at 768×16 and 4096×8, lr 1e-3 and 4e-3, with
a noisy target gradient and with an adversarial one (scale jumping from 1e-6 to 1e4, sign
flipping every 7 steps): peak ‖XᵀX − I‖_F between 2.4e-3 and 5.0003e-3 (ε plus float32 round-off),
mean step 0.93 to 1.00 of lr.

Previous behaviour (for the record): Adam applied *after* the field, as in the PoLAR reference
callback, breaks the tangency of the first term; with λ = 2.5e-3 a 768×16 factor reached
‖XᵀX − I‖_F = 7.4. The PoLAR reference code (github.com/kcc-lion/polar,
``callbacks/landing_callback.py``) defaults ``lambda_regul = 1.0`` in its callback and passes
``--regularization_lambda 5e-3`` in its commonsense scripts (``scripts/train_and_eval.sh``:
``polar 4e-3 5e-3``), with the field G·XᵀX − X·GᵀX (no ½) fed to AdamW. Its λ is in units of
the raw gradient; ours multiplies a field formed from the unit-scale Adam direction, so the two
numbers are not comparable and our default is λ = 100 (2ηλ = 0.8 at PoLAR's lr = 4e-3;
η ≤ 1/(2λ(1 + δ_max)) is enforced, which limits lr to about 5e-3 for λ = 100).

Euclidean parameters get plain AdamW (decoupled weight decay), identical to
``torch.optim.AdamW``. Stiefel factors get no weight decay.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeFloat
from torch import Tensor

from bayeshead.errors import UserInputError
from bayeshead.manifolds._adamw_step import adamw_update, init_adam_state
from bayeshead.manifolds._groups import param_geometry, torch_groups
from bayeshead.manifolds.adam_config import ManifoldAdamConfig
from bayeshead.manifolds.geometry import ParamGroup
from bayeshead.manifolds.landing_safe_step import safe_step_size
from bayeshead.registry import OPTIMIZERS

__all__ = ["LandingConfig", "LandingAdamW", "landing_field", "relative_gradient", "build_landing"]

DEFAULT_PENALTY = 100.0
DEFAULT_MAX_DISTANCE = 5e-3


def relative_gradient(x: Tensor, grad: Tensor) -> Tensor:
    """skew(G·Xᵀ)·X = ½(G(XᵀX) − X(GᵀX)) for X, G ∈ R^{…×k×r}: the first term of the field."""
    if x.shape != grad.shape or x.dim() < 2:
        raise UserInputError(
            f"landing expects X and G of the same (…, k, r) shape, got {tuple(x.shape)} "
            f"and {tuple(grad.shape)}"
        )
    xt = x.transpose(-1, -2)
    return 0.5 * (grad @ (xt @ x) - x @ (grad.transpose(-1, -2) @ x))


def landing_field(x: Tensor, grad: Tensor, penalty: float) -> Tensor:
    """Λ(X) = ½(G(XᵀX) − X(GᵀX)) + λ·X(XᵀX − I) for X, G ∈ R^{…×k×r}."""
    rel = relative_gradient(x, grad)
    gram = x.transpose(-1, -2) @ x
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return rel + penalty * (x @ (gram - eye))


class LandingConfig(ManifoldAdamConfig):
    kind: Literal["landing"] = "landing"
    penalty: NonNegativeFloat = Field(
        DEFAULT_PENALTY,
        description="λ, the weight of the attraction term λ·X(XᵀX − I) of the landing field "
        "formed from the Adam direction (entries of order 1); each step removes about 2·lr·λ of "
        "the distance to the manifold. Steps are capped at 1/(2λ(1 + δ_max)), ~1/(2λ).",
    )
    max_distance: float = Field(
        DEFAULT_MAX_DISTANCE,
        gt=0.0,
        lt=1.0,
        description="ε of the safe step: steps are shortened so that ‖XᵀX − I‖_F ≤ ε after "
        "every step (Ablin & Peyré 2022).",
    )


class LandingAdamW(torch.optim.Optimizer):
    """AdamW whose Stiefel parameters step along the landing field of their Adam direction,
    with the safe step size (no retraction). Groups may carry ``geometry``, ``penalty`` and
    ``max_distance``. The step length used last is kept in ``state[p]["landing_step"]``."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        penalty: float = DEFAULT_PENALTY,
        max_distance: float = DEFAULT_MAX_DISTANCE,
    ) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or penalty < 0 or not 0 < max_distance < 1:
            raise UserInputError(
                f"LandingAdamW needs lr > 0, eps > 0, weight_decay >= 0, penalty >= 0 and "
                f"0 < max_distance < 1; got lr={lr}, eps={eps}, weight_decay={weight_decay}, "
                f"penalty={penalty}, max_distance={max_distance}"
            )
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            penalty=penalty,
            max_distance=max_distance,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def _stiefel_update(self, x: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        state = self.state[x]
        init_adam_state(state, x)
        beta1, beta2 = group["betas"]
        state["step"] = int(state["step"]) + 1
        step = state["step"]
        rel = relative_gradient(x, grad)
        state["exp_avg"].lerp_(rel, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(rel, rel, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2**step)).sqrt_().add_(group["eps"])
        direction = state["exp_avg"] / (1 - beta1**step) / denom
        field = landing_field(x, direction, group["penalty"])
        eta_max = safe_step_size(x, field, group["penalty"], group["max_distance"])
        eta = torch.clamp(eta_max, max=group["lr"]).to(x.dtype)
        state["landing_step"] = eta.clone()
        x.sub_(eta[..., None, None] * field)

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
                if param_geometry(group, param) == "stiefel":
                    self._stiefel_update(param, param.grad, group)
                    continue
                adamw_update(
                    param,
                    param.grad,
                    self.state[param],
                    lr=group["lr"],
                    betas=group["betas"],
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                )
        return loss


@OPTIMIZERS.register("landing", config=LandingConfig)
def build_landing(groups: list[ParamGroup], config: LandingConfig | None = None) -> LandingAdamW:
    """Adam-preconditioned landing with the safe step on Stiefel factors, AdamW on the rest."""
    config = config or LandingConfig()
    return LandingAdamW(
        torch_groups(groups, stiefel_lr=config.stiefel_lr),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        penalty=config.penalty,
        max_distance=config.max_distance,
    )
