"""Laplace algebra of a per-option (multiple-choice) last layer, shared by the ``laplace_options``
head (:mod:`bayeshead.heads.laplace_options`) and the Laplace refinement of the ``vbll_options``
head (:func:`bayeshead.heads.laplace_refine.refine_options_with_laplace`).

Option k of question q has features h_{q,k} ∈ R^d and logit z_{q,k} = wᵀh_{q,k} + b_k (b_k a
point-estimated position bias, or 0); p_q = softmax over the question's own n_q options. With
H_q the n_q × d matrix of question q's option features, the summed negative log-likelihood
L(w) = −Σ_q log p_q[y_q] has the generalised Gauss-Newton matrix

    G = Σ_q H_qᵀ (diag(p_q) − p_q p_qᵀ) H_q = Σ_q Σ_k p_{q,k} (h_{q,k} − m_q)(h_{q,k} − m_q)ᵀ,

m_q = Σ_k p_{q,k} h_{q,k} (the second form, a p-weighted scatter around the question's mean
option, is the same matrix, positive semi-definite by construction and computed that way). The
logits are linear in w, so G is the exact Hessian of L (MacKay 1992; Martens 2020), and it does
not depend on the labels.

With the prior w ~ N(0, δ⁻¹ I) the Laplace posterior is N(w*, (G + δI)⁻¹), and the Laplace log
evidence at the mode w* (MacKay 1992, "Bayesian Interpolation"; Daxberger et al. 2021,
"Laplace Redux") is, with λ_i the eigenvalues of G,

    log p(D | δ) ≈ −L(w*) − ½ δ ‖w*‖² + ½ d log δ − ½ Σ_i log(λ_i + δ)

(the (2π)^{d/2} of the prior and of the Gaussian integral cancel). In t = log δ it is strictly
concave (its derivative −½ δ‖w*‖² + ½ Σ_i λ_i / (λ_i + δ) decreases in t), so a bounded
one-dimensional search finds its single maximum; at an interior maximum δ‖w*‖² = γ =
Σ_i λ_i / (λ_i + δ), MacKay's effective number of parameters.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from bayeshead.errors import UserInputError
from bayeshead.heads.option_scoring import check_counts, question_index, segment_log_softmax

__all__ = [
    "maximise_option_log_evidence",
    "option_ggn",
    "option_laplace_covariance",
    "option_log_evidence",
    "option_log_probs",
]

_CHUNK = 4096


def option_log_probs(features: Tensor, counts: Tensor, weight: Tensor, bias_offsets: Tensor | None = None) -> Tensor:
    """log p_{q,k} of every option row, flat (N,), in float64: the segment log-softmax of
    H w (+ b_k). ``bias_offsets`` (N,) is b_k of every row, or None."""
    counts = check_counts(counts, features.shape[0], "option_log_probs").to(features.device)
    logits = features.to(torch.float64) @ weight.detach().to(device=features.device, dtype=torch.float64)
    if bias_offsets is not None:
        logits = logits + bias_offsets.detach().to(device=features.device, dtype=torch.float64)
    return segment_log_softmax(logits, counts)


@torch.no_grad()
def option_ggn(features: Tensor, counts: Tensor, weight: Tensor, bias_offsets: Tensor | None = None) -> Tensor:
    """G = Σ_q H_qᵀ (diag(p_q) − p_q p_qᵀ) H_q, (d, d) float64, at the weight vector ``weight``
    (d,) and position offsets ``bias_offsets`` (N,) (or None), for flat option rows ``features``
    (N, d) of questions with option counts ``counts`` (Q,). Computed as the p-weighted scatter
    Σ_{q,k} p_{q,k} (h_{q,k} − m_q)(h_{q,k} − m_q)ᵀ, in chunks of rows."""
    if features.dim() != 2 or weight.shape != (features.shape[1],):
        raise UserInputError(
            f"option_ggn: expected features (N, d) and a weight (d,), got {tuple(features.shape)} and "
            f"{tuple(weight.shape)}"
        )
    counts = check_counts(counts, features.shape[0], "option_ggn").to(features.device)
    probs = option_log_probs(features, counts, weight, bias_offsets).exp()
    question = question_index(counts)
    d = features.shape[1]
    centres = torch.zeros(counts.numel(), d, dtype=torch.float64, device=features.device)
    for start in range(0, features.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        centres.index_add_(0, question[rows], features[rows].to(torch.float64) * probs[rows, None])
    ggn = torch.zeros(d, d, dtype=torch.float64, device=features.device)
    for start in range(0, features.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        centred = (features[rows].to(torch.float64) - centres[question[rows]]) * probs[rows, None].sqrt()
        ggn += centred.transpose(0, 1) @ centred
    return 0.5 * (ggn + ggn.transpose(0, 1))


@torch.no_grad()
def option_laplace_covariance(
    features: Tensor, counts: Tensor, weight: Tensor, bias_offsets: Tensor | None, prior_precision: float
) -> Tensor:
    """(G + δ I)⁻¹, (d, d) float64, with G = :func:`option_ggn` at ``weight`` (from the Cholesky
    factor of the precision, ``torch.cholesky_inverse``)."""
    if not prior_precision > 0:
        raise UserInputError(f"prior_precision must be positive, got {prior_precision}")
    ggn = option_ggn(features, counts, weight, bias_offsets)
    precision = ggn + prior_precision * torch.eye(ggn.shape[0], dtype=ggn.dtype, device=ggn.device)
    chol, info = torch.linalg.cholesky_ex(precision)
    if int(info) != 0:
        raise UserInputError(
            f"Laplace precision G + δI not positive definite (δ = {prior_precision}); use a larger prior precision"
        )
    return torch.cholesky_inverse(chol)


def option_log_evidence(
    eigvals: Tensor, nll: Tensor | float, weight_sq: Tensor | float, prior_precision: Tensor | float
) -> Tensor:
    """−L(w*) − ½ δ ‖w*‖² + ½ d log δ − ½ Σ_i log(λ_i + δ), float64, with ``eigvals`` λ (d,) of G
    (negative rounding clamped to 0), ``nll`` = L(w*) (summed over questions) and ``weight_sq`` =
    ‖w*‖². Written as −L − ½ δ‖w*‖² − ½ Σ_i log(1 + λ_i/δ) (the same number, stable for large
    δ)."""
    lam = eigvals.to(torch.float64).clamp_min(0.0)
    delta = torch.as_tensor(prior_precision, dtype=torch.float64, device=lam.device)
    nll = torch.as_tensor(nll, dtype=torch.float64, device=lam.device)
    weight_sq = torch.as_tensor(weight_sq, dtype=torch.float64, device=lam.device)
    return -nll - 0.5 * delta * weight_sq - 0.5 * torch.log1p(lam / delta).sum()


def maximise_option_log_evidence(
    eigvals: Tensor, nll: float, weight_sq: float, bounds: tuple[float, float], xatol: float = 1e-6
) -> tuple[float, Literal["lower", "upper"] | None]:
    """argmax_δ :func:`option_log_evidence` over log δ in ``bounds`` (natural log; Brent's bounded
    search, ``scipy.optimize.minimize_scalar(method="bounded")``). Returns δ and the side of the
    interval it ended at (within 1e-3 of the width; the evidence may rise beyond it) or None."""
    from scipy.optimize import minimize_scalar

    from bayeshead.posthoc_bounds import bound_side

    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UserInputError(f"bounds on log δ must be finite with lower < upper, got {bounds}")
    lam = eigvals.detach().to(device="cpu", dtype=torch.float64)

    def negative(log_delta: float) -> float:
        return -float(option_log_evidence(lam, nll, weight_sq, math.exp(log_delta)))

    result = minimize_scalar(negative, bounds=(lo, hi), method="bounded", options={"xatol": xatol, "maxiter": 500})
    log_delta = float(result.x)
    return math.exp(log_delta), bound_side(log_delta, lo, hi, rtol=1e-3)
