"""Training-free Bayesianization of a trained LoRA (TFB), the adapter-level mathematics.

With the thin SVD B = U·diag(d)·Vᵀ (B ∈ R^{m×r}, U ∈ R^{m×r}, d ∈ R^r descending, V ∈ R^{r×r}),

    B' = U·diag(d),   A' = Vᵀ·A,   so that B'·A' = B·A (the LoRA's ΔW is unchanged),

and the posterior over A' is q(A') = N(A', diag σ²) with

    σ_ij = β / d_i      (row i of A', the same for every column j; σ has shape r × n).

The noise then enters ΔW as B'·(σ ⊙ E) = U·(β·E) on the rows with d_i > 0: an isotropic
perturbation of size β inside B's column space, whatever the singular values are.
:func:`tfb_factors` returns (B', A', d) (computed in float64, cast back to the factors' dtype;
singular-vector signs fixed so that the largest |entry| of each column of U is positive, which
makes A' reproducible across LAPACK builds; B'A' does not depend on it). :func:`tfb_std` builds σ.
The method (``bayeshead.methods.tfb``) puts B', A' into a
:class:`~bayeshead.adapters.bayesian_lora.BayesianLoRALinear` and calls
``set_std(tfb_std(d, β, n), trainable=False)``, searching β with
:func:`bayeshead.methods.bisection.largest_feasible`.

Zero (or numerically zero) singular values, e.g. an untrained B = 0: σ_i = 0 for every i with
d_i ≤ rtol·max(d) (all i when max(d) = 0), rtol = r·eps(dtype of d) by default (the numerical
rank tolerance of B). Column i of B' = U·diag(d) is (numerically) zero there, so no σ could move
ΔW along it; σ = 0 keeps everything finite (no inf/NaN) and the noise exactly zero. An untrained
LoRA thus gets no uncertainty at all. The reference (``modelwrappers/tfblora.py``,
``_wrap_lora_layer_var_infer`` / ``_update_lora_layer_var_infer``) uses σ_i = β/(d_i + 1e-6)
instead, so for d_i = 0 its σ is β·10⁶ on a zero column of B' (also no effect on ΔW) and for
0 < d_i ≪ 10⁻⁶ the ΔW noise along u_i is β·d_i/(d_i + 10⁻⁶) < β; the two agree up to a relative
10⁻⁶/d_i for d_i above the cut-off.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayeshead.adapters.lora import LoRALinear
from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["tfb_factors", "tfb_std"]


@torch.no_grad()
def tfb_factors(lora: LoRALinear) -> tuple[Tensor, Tensor, Tensor]:
    """(B' = U·diag(d), A' = Vᵀ·A, d) from the thin SVD B = U·diag(d)·Vᵀ, so B'·A' = B·A.

    Shapes: B' (m × r), A' (r × n), d (r,), descending and ≥ 0; in the dtype/device of
    ``lora.lora_B`` / ``lora.lora_A`` (float64 inside). For a
    :class:`~bayeshead.adapters.bayesian_lora.BayesianLoRALinear`, A is its mean M.
    Refuses a merged adapter (its factors would be folded into the base weight twice)."""
    if not isinstance(lora, LoRALinear):
        raise InputTypeError(f"tfb_factors needs a LoRALinear, got {type(lora).__name__}")
    if lora.merged:
        raise UserInputError("tfb_factors: the LoRA adapter is merged; call unmerge() first")
    a = lora.lora_A.detach().to(torch.float64)
    b = lora.lora_B.detach().to(torch.float64)
    u, d, vh = torch.linalg.svd(b, full_matrices=False)  # b (m, r): u (m, r), d (r,), vh (r, r)
    idx = u.abs().argmax(dim=0)
    signs = torch.sign(u[idx, torch.arange(u.shape[1], device=u.device)])
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    u, vh = u * signs, vh * signs[:, None]
    b_new = u * d
    a_new = vh @ a
    return (
        b_new.to(lora.lora_B.dtype),
        a_new.to(lora.lora_A.dtype),
        d.to(lora.lora_B.dtype),
    )


def tfb_std(d: Tensor, beta: float, in_features: int, *, rtol: float | None = None) -> Tensor:
    """σ (r × ``in_features``) with σ_ij = β/d_i, and σ_ij = 0 where d_i ≤ rtol·max(d) (see the
    module docstring; rtol = r·eps(d.dtype) by default). dtype/device of ``d``; β ≥ 0 (β = 0
    gives σ = 0, the deterministic LoRA)."""
    if d.dim() != 1:
        raise UserInputError(f"tfb_std: d must be the 1-D vector of singular values, got shape {tuple(d.shape)}")
    beta = float(beta)
    if not (math.isfinite(beta) and beta >= 0):
        raise UserInputError(f"tfb_std: beta must be finite and >= 0, got {beta}")
    if int(in_features) <= 0:
        raise UserInputError(f"tfb_std: in_features must be positive, got {in_features}")
    if not bool(torch.isfinite(d).all()) or bool((d < 0).any()):
        raise UserInputError("tfb_std: singular values d must be finite and >= 0")
    dtype = d.dtype if d.is_floating_point() else torch.float64
    d64 = d.to(torch.float64)
    if rtol is None:
        rtol = max(d.numel(), 1) * torch.finfo(dtype).eps
    top = d64.max() if d64.numel() else d64.new_zeros(())
    keep = d64 > rtol * top  # false everywhere when max(d) = 0
    sigma = torch.where(keep, beta / torch.where(keep, d64, torch.ones_like(d64)), torch.zeros_like(d64))
    return sigma[:, None].expand(d.numel(), int(in_features)).to(dtype).clone()
