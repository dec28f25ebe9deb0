"""Link approximations for a Gaussian over logits: the GLM predictive of a linearised model.

Given logits f ~ N(μ, Σ_f) per example (μ of shape (B, C), Σ_f of shape (B, C, C)), the class
probabilities E[softmax(f)] are approximated by

* ``probit`` (MacKay 1992; Daxberger et al. 2021, "Laplace Redux", as laplace-torch's
  ``link_approx="probit"``):  p ≈ softmax(μ_c / sqrt(1 + (π/8)·Σ_f[c, c]));
* ``mc``: S samples f_s = μ + L_f ε_s with L_f L_fᵀ = Σ_f (Cholesky), p ≈ (1/S)·Σ_s softmax(f_s);
  the per-sample probabilities are kept in the predictive for the mutual information.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayeshead.errors import UserInputError
from bayeshead.types import CategoricalPredictive

__all__ = ["probit_predictive", "mc_predictive", "sample_logits", "psd_cholesky"]


def _check_moments(mean: Tensor, cov: Tensor) -> None:
    if mean.dim() != 2:
        raise UserInputError(f"logit mean must be (batch, classes), got shape {tuple(mean.shape)}")
    b, c = mean.shape
    if cov.shape not in ((b, c, c), (b, c)):
        raise UserInputError(
            f"logit covariance must be (batch, classes, classes) = ({b}, {c}, {c}) or its diagonal "
            f"({b}, {c}), got {tuple(cov.shape)}"
        )


def probit_predictive(mean: Tensor, cov: Tensor) -> CategoricalPredictive:
    """softmax(μ / sqrt(1 + π/8·diag Σ_f)); ``cov`` is (B, C, C) or its diagonal (B, C)."""
    _check_moments(mean, cov)
    var = cov if cov.dim() == 2 else cov.diagonal(dim1=-2, dim2=-1)
    kappa = torch.rsqrt(1.0 + (math.pi / 8.0) * var.clamp_min(0.0))
    return CategoricalPredictive.from_logits(kappa * mean)


def psd_cholesky(cov: Tensor) -> Tensor:
    """A lower factor L with L Lᵀ = ``cov`` for a batch of symmetric PSD matrices.

    Cholesky where it succeeds; where a matrix is singular to working precision, the factor
    Q·sqrt(max(λ, 0)) of its eigendecomposition (so LLᵀ still equals ``cov`` up to rounding).
    """
    chol, info = torch.linalg.cholesky_ex(cov)
    bad = info != 0
    if bool(bad.any()):
        evals, evecs = torch.linalg.eigh(cov[bad])
        chol = chol.clone()
        chol[bad] = evecs * evals.clamp_min(0.0).sqrt().unsqueeze(-2)
    return chol


def sample_logits(
    mean: Tensor, cov: Tensor, n_samples: int, generator: torch.Generator | None = None
) -> Tensor:
    """S draws of f ~ N(μ, Σ_f): shape (S, B, C). ``cov`` is (B, C, C) or its diagonal (B, C)."""
    _check_moments(mean, cov)
    if n_samples <= 0:
        raise UserInputError(f"n_samples must be a positive integer, got {n_samples}")
    eps = torch.randn(
        (n_samples, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device
    )
    if cov.dim() == 2:
        return mean + cov.clamp_min(0.0).sqrt() * eps
    chol = psd_cholesky(cov)
    return mean + torch.einsum("bij,sbj->sbi", chol, eps)


def mc_predictive(
    mean: Tensor, cov: Tensor, n_samples: int, generator: torch.Generator | None = None
) -> CategoricalPredictive:
    """(1/S)·Σ_s softmax(f_s), f_s ~ N(μ, Σ_f); per-sample probabilities kept in ``samples``."""
    return CategoricalPredictive.from_sample_logits(sample_logits(mean, cov, n_samples, generator))
