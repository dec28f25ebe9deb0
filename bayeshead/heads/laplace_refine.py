"""Post-hoc Laplace refinement of a Gaussian last layer's covariances (the "+LA" variant).

A trained variational head (e.g. VBLL classification) has posterior means W̄ (C, d) and a bias
b. The refinement keeps the means and replaces the covariance of each class row w_c by the
Laplace covariance at the mean, with the class-diagonal blocks of the softmax GGN
(:mod:`bayeshead.heads.laplace_curvature`; MacKay 1992):

    P_c = Σ_n p_nc (1 − p_nc)·φ_n φ_nᵀ + δ·I,    S_c = P_c⁻¹,    p_n = softmax(W̄ φ_n + b),

(the cross-class blocks of the GGN are dropped, matching a head whose rows are independent).
S_c is computed from the Cholesky factor of P_c (``torch.cholesky_inverse``).

The head must follow :class:`SupportsLaplaceRefinement`: it exposes its means and bias and
accepts one dense covariance per class.

A per-option (multiple-choice) Gaussian last layer with one weight vector w ~ N(w̄, S) shared by
all options (``vbll_options``; :class:`SupportsOptionLaplaceRefinement`) is refined by
:func:`refine_options_with_laplace`: S = (G + δI)⁻¹ with the per-option softmax GGN at w̄,

    G = Σ_q H_qᵀ (diag(p_q) − p_q p_qᵀ) H_q,   p_q = softmax_{k < n_q}(H_q w̄ + b)

(:func:`~bayeshead.heads.option_laplace_math.option_ggn`; w is one vector, so nothing is dropped).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.base import check_class_targets, check_features
from bayeshead.heads.option_laplace_math import option_laplace_covariance
from bayeshead.heads.option_scoring import check_option_targets, option_positions

__all__ = [
    "SupportsLaplaceRefinement",
    "SupportsOptionLaplaceRefinement",
    "laplace_row_covariances",
    "refine_options_with_laplace",
    "refine_with_laplace",
]


@runtime_checkable
class SupportsLaplaceRefinement(Protocol):
    """A Gaussian last layer with independent class rows w_c ~ N(m_c, S_c)."""

    in_features: int
    num_outputs: int

    def laplace_mean(self) -> tuple[Tensor, Tensor | None]:
        """The row means (C, d) and the bias (C,) or None."""
        ...

    def set_row_covariances(self, covariances: Tensor) -> None:
        """Replace S_c by ``covariances[c]`` (C, d, d), symmetric positive definite."""
        ...


@runtime_checkable
class SupportsOptionLaplaceRefinement(Protocol):
    """A per-option Gaussian last layer: one weight vector w ~ N(w̄, S) scores every option."""

    in_features: int
    num_outputs: int

    def laplace_option_mean(self) -> tuple[Tensor, Tensor | None]:
        """w̄ (d,) and the position bias (max_options,) or None."""
        ...

    def unpad(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Padded option features (Q, K', d) → flat rows (N, d) and counts (Q,)."""
        ...

    def check_inputs(self, features: Tensor, counts: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """Validated flat features (N, d) and counts (Q,)."""
        ...

    def set_covariance(self, covariance: Tensor) -> None:
        """Replace S by ``covariance`` (d, d), symmetric positive definite."""
        ...


@torch.no_grad()
def laplace_row_covariances(
    mean: Tensor,
    bias: Tensor | None,
    features: Tensor,
    prior_precision: float,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """S_c = (Σ_n p_nc (1 − p_nc) φ_n φ_nᵀ + δ I)⁻¹ for every class c: shape (C, d, d)."""
    if prior_precision <= 0:
        raise UserInputError(f"prior_precision must be positive, got {prior_precision}")
    phi = features.to(dtype)
    logits = phi @ mean.to(dtype).transpose(0, 1)
    if bias is not None:
        logits = logits + bias.to(dtype)
    probs = torch.softmax(logits, dim=-1)
    weights = probs * (1.0 - probs)  # (N, C): Λ_n[c, c]
    precision = torch.einsum("nc,ni,nj->cij", weights, phi, phi)
    precision = precision + prior_precision * torch.eye(phi.shape[1], dtype=dtype, device=phi.device)
    chol, info = torch.linalg.cholesky_ex(precision)
    if bool((info != 0).any()):
        raise UserInputError(
            f"Laplace precision not positive definite for classes {(info != 0).nonzero().flatten().tolist()}; "
            "use a larger prior_precision"
        )
    return torch.cholesky_inverse(chol)


@torch.no_grad()
def refine_with_laplace(
    head: SupportsLaplaceRefinement, features: Tensor, targets: Tensor, prior_precision: float
) -> Tensor:
    """Set ``head``'s row covariances to the Laplace ones at its mean on the training
    ``features`` (N, d); ``targets`` only validate the data (the GGN does not use labels).
    Returns the covariances set, (C, d, d)."""
    if not isinstance(head, SupportsLaplaceRefinement):
        raise InputTypeError(
            f"refine_with_laplace: {type(head).__name__} does not expose laplace_mean() and "
            "set_row_covariances(cov); implement both (see SupportsLaplaceRefinement)"
        )
    features = check_features(features, head.in_features, "refine_with_laplace")
    check_class_targets(targets, features.shape[0], head.num_outputs, "refine_with_laplace")
    mean, bias = head.laplace_mean()
    covariances = laplace_row_covariances(mean, bias, features, prior_precision)
    head.set_row_covariances(covariances)
    return covariances


@torch.no_grad()
def refine_options_with_laplace(
    head: SupportsOptionLaplaceRefinement,
    features: Tensor,
    targets: Tensor,
    prior_precision: float,
    *,
    counts: Tensor | list[int] | None = None,
) -> Tensor:
    """Set a per-option head's S to (G + δ I)⁻¹, G the per-option softmax GGN at w̄ (and the
    position bias) on the training option features: padded (Q, K', d) with NaN rows for absent
    options (what the trainer collects), or flat (N, d) with ``counts`` (Q,). ``targets`` (Q,) only
    validate the data (the GGN does not use labels). Returns S, (d, d) float64."""
    if not isinstance(head, SupportsOptionLaplaceRefinement):
        raise InputTypeError(
            f"refine_options_with_laplace: {type(head).__name__} does not expose laplace_option_mean(), unpad(), "
            "check_inputs() and set_covariance(cov); implement them (see SupportsOptionLaplaceRefinement)"
        )
    if counts is None:
        features, counts = head.unpad(features)
    features, counts = head.check_inputs(features, counts)
    check_option_targets(targets, counts, "refine_options_with_laplace")
    mean, bias = head.laplace_option_mean()
    offsets = None if bias is None else bias[option_positions(counts)]
    covariance = option_laplace_covariance(features, counts, mean, offsets, prior_precision)
    head.set_covariance(covariance)
    return covariance
