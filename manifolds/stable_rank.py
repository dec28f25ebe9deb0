"""Stable rank sr(M) = ‖M‖²_F / ‖M‖²_2 of a low-rank update, computed cheaply.

* :func:`stable_rank` — any (small) matrix, from its singular values.
* :func:`stable_rank_orthonormal` — ΔW = s·U·Θ·Vᵀ with orthonormal U, V (PoLAR, Lion et al.
  2025): the Frobenius and spectral norms are those of Θ, so sr(ΔW) = sr(Θ), an r×r problem.
* :func:`stable_rank_lowrank` — ΔW = s·B·A (LoRA, Hu et al. 2021): with B = Q_B·R_B and
  Aᵀ = Q_A·R_A, ΔW = s·Q_B·(R_B·R_Aᵀ)·Q_Aᵀ, so sr(ΔW) = sr(R_B·R_Aᵀ); cost O((m + n) r²).

The scale s cancels. Never an SVD of the m×n matrix. The stable rank of a zero matrix is
undefined; these functions return 0 for it (e.g. a freshly initialised adapter).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = ["stable_rank", "stable_rank_lowrank", "stable_rank_orthonormal"]


def _as_float(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def stable_rank(matrix: Tensor) -> float:
    """sr(M) = ‖M‖²_F / σ_max(M)² for a 2-D tensor; 0.0 for the zero matrix.

    Uses the singular values of ``matrix`` itself: call it on small matrices only (for a
    factored update use :func:`stable_rank_lowrank` or :func:`stable_rank_orthonormal`)."""
    if matrix.dim() != 2:
        raise UserInputError(f"stable_rank expects a 2-D matrix, got shape {tuple(matrix.shape)}")
    sv = torch.linalg.svdvals(_as_float(matrix.detach()))
    top = sv.max() if sv.numel() else sv.new_zeros(())
    if top == 0:
        return 0.0
    return float((sv.square().sum() / top.square()).item())


def stable_rank_orthonormal(core: Tensor) -> float:
    """sr(U·Θ·Vᵀ) = sr(Θ) when U and V have orthonormal columns (PoLAR)."""
    return stable_rank(core)


def stable_rank_lowrank(left: Tensor, right: Tensor) -> float:
    """sr(B·A) for B ∈ R^{m×r} (``left``) and A ∈ R^{r×n} (``right``) from the r×r core
    R_B·R_Aᵀ of the QR factorisations B = Q_B R_B and Aᵀ = Q_A R_A."""
    if left.dim() != 2 or right.dim() != 2 or left.shape[1] != right.shape[0]:
        raise UserInputError(
            f"expected B (m, r) and A (r, n) with matching r, got {tuple(left.shape)} and "
            f"{tuple(right.shape)}"
        )
    b = _as_float(left.detach())
    a = _as_float(right.detach())
    dtype = torch.promote_types(a.dtype, b.dtype)
    _, r_b = torch.linalg.qr(b.to(dtype), mode="reduced")
    _, r_a = torch.linalg.qr(a.to(dtype).T, mode="reduced")
    return stable_rank(r_b @ r_a.T)
