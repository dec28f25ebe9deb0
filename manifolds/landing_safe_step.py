"""The landing safe step: the largest step along a landing field that keeps X within a distance
ε of the Stiefel manifold (the safeguard of Ablin & Peyré 2022, "Fast and accurate optimization
on the orthogonal manifold without retraction", AISTATS; extended to St(k, r) by Ablin, Vary,
Gao & Absil 2023, "Infeasible deterministic, stochastic, and variance-reduction algorithms for
optimization under orthogonality constraints").

Let Δ = XᵀX − I, d = ‖Δ‖_F, and Λ = ΨX + λ·XΔ a landing field whose first term has a k×k
skew-symmetric Ψ (here Ψ = skew(D·Xᵀ) for some direction D). For X̃ = X − ηΛ, exactly,

    X̃ᵀX̃ − I = Δ − η(XᵀΛ + ΛᵀX) + η²ΛᵀΛ = Δ − 2ηλ(Δ + Δ²) + η²ΛᵀΛ,

because XᵀΨX is skew (it cancels) and XᵀX·Δ = Δ + Δ². With δ_i the eigenvalues of Δ and
2ηλ(1 + δ_max) ≤ 1, every factor 1 − 2ηλ(1 + δ_i) lies in [0, 1 − 2ηλ(1 + δ_min)], hence

    d̃ ≤ (1 − 2ηλc)·d + η²q,   c = 1 + δ_min = σ_min(X)²,  q = ‖ΛᵀΛ‖_F,

and d̃ ≤ t holds for every 0 ≤ η ≤ η*, the positive root of qη² − 2λcd·η + (d − t) = 0:

    η* = (λcd + √(λ²c²d² + q(t − d))) / q,   t = max(ε, d).

The papers bound the quadratic term by ‖Λ‖_F² and c by 1 − d; using q and the spectrum of the
r×r matrix Δ gives the same guarantee with a larger admissible step. Cost O(k r² + r³).
With t = max(ε, d) a point already farther than ε never moves away (and the attraction brings
it back); a point with d ≤ ε stays within ε.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = ["safe_step_size"]


@torch.no_grad()
def safe_step_size(x: Tensor, field: Tensor, penalty: float, max_distance: float) -> Tensor:
    """η_max = min(η*, 1 / (2λ(1 + δ_max))) for X, Λ ∈ R^{…×k×r} (one value per matrix,
    shape ``x.shape[:-2]``, float64; ``inf`` when nothing limits the step).

    ``field`` must be a landing field ΨX + λ·X(XᵀX − I) with Ψ skew and λ = ``penalty``;
    ``max_distance`` is ε in (0, 1). Raises ``ValueError`` when X has lost column rank
    (σ_min(X)² ≤ 1e-6): the landing field cannot restore it."""
    if not 0.0 < max_distance < 1.0:
        raise UserInputError(
            f"max_distance must lie in (0, 1), got {max_distance}; it is the largest allowed "
            "‖XᵀX − I‖_F, e.g. 5e-3"
        )
    if penalty < 0:
        raise UserInputError(f"penalty must be >= 0, got {penalty}")
    x64, f64 = x.detach().double(), field.detach().double()
    r = x64.shape[-1]
    delta = x64.transpose(-1, -2) @ x64 - torch.eye(r, dtype=torch.float64, device=x.device)
    eig = torch.linalg.eigvalsh(delta)
    contraction = 1.0 + eig[..., 0]
    if bool((contraction <= 1e-6).any()):
        raise UserInputError(
            f"a Stiefel factor has lost column rank (smallest eigenvalue of XᵀX = "
            f"{float(contraction.min()):.3g}, expected near 1); the landing step cannot restore "
            "it. Re-initialise it with bayeshead.manifolds.random_stiefel or replace it by its "
            "polar factor"
        )
    d = torch.linalg.matrix_norm(delta)
    q = torch.linalg.matrix_norm(f64.transpose(-1, -2) @ f64)
    target = torch.clamp(d, min=max_distance)
    lin = penalty * contraction * d
    root = (lin + torch.sqrt(lin**2 + q * (target - d))) / q
    eta = torch.where(q > 0, root, torch.full_like(q, float("inf")))
    if penalty > 0:
        eta = torch.minimum(eta, 1.0 / (2.0 * penalty * (1.0 + eig[..., -1])))
    return eta
