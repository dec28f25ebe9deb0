"""Stiefel-manifold helpers: random orthonormal frames and the orthogonality error.

St(k, r) = {X ∈ R^{k×r} : XᵀX = I_r}, r ≤ k. The orthogonality error
ε(X) = ‖XᵀX − I_r‖_F is the distance diagnostic logged for the landing optimizer
(Ablin & Peyré 2022) and checked for Riemannian Adam (Bécigneul & Ganea 2019).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = ["random_stiefel", "orthogonality_error"]


def random_stiefel(
    rows: int,
    cols: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A random point of St(rows, cols): Q of the QR factorisation of a Gaussian matrix,
    with column signs flipped so that diag(R) > 0 (this makes Q Haar-distributed and unique).

    Raises ``ValueError`` when ``cols > rows`` (no orthonormal frame exists)."""
    if cols > rows or cols < 1:
        raise UserInputError(
            f"a Stiefel frame needs 1 <= cols <= rows, got rows={rows}, cols={cols}; "
            "lower the rank to at most the smaller dimension"
        )
    gauss = torch.randn(rows, cols, dtype=torch.float64, device=device, generator=generator)
    q, r = torch.linalg.qr(gauss, mode="reduced")
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(dtype)


def orthogonality_error(x: Tensor) -> Tensor:
    """ε(X) = ‖XᵀX − I_r‖_F for X ∈ R^{k×r} (batched over leading dimensions).

    Costs O(k r²); computed in at least fp32 whatever the dtype of ``x``."""
    if x.dim() < 2:
        raise UserInputError(f"orthogonality_error expects a matrix (…, k, r), got shape {tuple(x.shape)}")
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    gram = work.transpose(-1, -2) @ work
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return torch.linalg.matrix_norm(gram - eye, ord="fro")
