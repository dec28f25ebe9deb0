"""Softmax generalised Gauss-Newton (GGN) curvature of a linear last layer.

For logits f_n = W φ_n + b (W of shape (C, d)) and the softmax cross-entropy, the Hessian of
-log p(y_n | f_n) with respect to f_n is Λ_n = diag(p_n) − p_n p_nᵀ, and the Jacobian of f_n with
respect to the parameters is J_n = I_C ⊗ φ̃_nᵀ, where φ̃_n = [φ_n, 1] when there is a bias and
the parameters are ordered class by class, θ̃ = vec([W | b]) (row c holds w_c and b_c).
The GGN of the summed loss is

    H = Σ_n J_nᵀ Λ_n J_n = Σ_n Λ_n ⊗ φ̃_n φ̃_nᵀ ,

which, the model being linear in θ, is also the exact Hessian (MacKay 1992; Martens 2020).

Structures (Daxberger et al. 2021, "Laplace Redux"; names as in laplace-torch):

* ``full``: H itself, (C·D) × (C·D) with D = d + 1 (bias) or d;
* ``diag``: its diagonal, H[(c,i),(c,i)] = Σ_n p_nc (1 − p_nc) φ̃_ni², stored as (C, D);
* ``kron``: K-FAC with weight and bias as separate blocks (as laplace-torch's ``KronLLLaplace``
  with its default curvlinops backend): the weight block is B ⊗ A with
  B = Σ_n Λ_n (C × C) and A = (1/N)·Σ_n φ_n φ_nᵀ (d × d); the bias block is B; the
  weight-bias cross terms are dropped. (B ⊗ A is exact when φ_n φ_nᵀ does not vary with n.)

laplace-torch orders the last-layer parameters as [vec(W) row-major, b]; :func:`reference_index`
maps that order to the class-by-class order used here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = [
    "augment",
    "softmax_hessian",
    "ggn_full",
    "ggn_diag",
    "ggn_kron",
    "reference_index",
]

_CHUNK = 2048


def augment(features: Tensor, bias: bool) -> Tensor:
    """φ̃ = [φ, 1] (shape (N, d + 1)) with a bias, φ (N, d) without."""
    if not bias:
        return features
    return torch.cat([features, features.new_ones(features.shape[0], 1)], dim=1)


def softmax_hessian(probs: Tensor) -> Tensor:
    """Λ_n = diag(p_n) − p_n p_nᵀ for probabilities (N, C): shape (N, C, C)."""
    return torch.diag_embed(probs) - probs.unsqueeze(-1) * probs.unsqueeze(-2)


def ggn_full(features_aug: Tensor, probs: Tensor) -> Tensor:
    """H = Σ_n Λ_n ⊗ φ̃_n φ̃_nᵀ in the class-by-class order, shape (C·D, C·D)."""
    n, dim = features_aug.shape
    c = probs.shape[1]
    out = features_aug.new_zeros(c, dim, c, dim)
    for start in range(0, n, _CHUNK):
        phi = features_aug[start : start + _CHUNK]
        lam = softmax_hessian(probs[start : start + _CHUNK])
        out += torch.einsum("nce,ni,nj->ciej", lam, phi, phi)
    return out.reshape(c * dim, c * dim)


def ggn_diag(features_aug: Tensor, probs: Tensor) -> Tensor:
    """diag(H) = Σ_n p_nc (1 − p_nc) φ̃_ni², shape (C, D)."""
    return (probs * (1.0 - probs)).transpose(0, 1) @ features_aug.pow(2)


def ggn_kron(features: Tensor, probs: Tensor) -> tuple[Tensor, Tensor]:
    """K-FAC factors (B, A): B = Σ_n Λ_n (C × C), A = (1/N)·Σ_n φ_n φ_nᵀ (d × d)."""
    n = features.shape[0]
    if n == 0:
        raise UserInputError("K-FAC needs at least one example, got none")
    factor_b = torch.diag(probs.sum(0)) - probs.transpose(0, 1) @ probs
    factor_a = features.transpose(0, 1) @ features / n
    return factor_b, factor_a


def reference_index(num_classes: int, in_features: int, bias: bool) -> Tensor:
    """Indices ``idx`` with θ_reference = θ̃[idx]: laplace-torch's [vec(W), b] order from the
    class-by-class order vec([W | b]) used here."""
    dim = in_features + int(bias)
    rows = torch.arange(num_classes).repeat_interleave(in_features)
    cols = torch.arange(in_features).repeat(num_classes)
    idx = rows * dim + cols
    if bias:
        idx = torch.cat([idx, torch.arange(num_classes) * dim + in_features])
    return idx
