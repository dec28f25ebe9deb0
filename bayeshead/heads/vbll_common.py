"""Pieces shared by the VBLL heads (Harrison, Willes & Snoek, ICLR 2024).

* :class:`VBLLConfigBase`: the config fields every VBLL head has;
* :func:`prior_variance`: the prior variance s₀ after the documented width scaling;
* :func:`noise_prior_term`: the Wishart-type term on a diagonal noise precision;
* :func:`linear_rows`: weight rows (and bias) from a trained linear head, an ``nn.Linear`` or a
  raw (C, d) tensor such as LM-head rows;
* :func:`check_regression_targets`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.base import HeadConfig
from bayeshead.heads.covariance import CovarianceKind
from bayeshead.types import LossTerms

__all__ = [
    "VBLLConfigBase",
    "WidthScaling",
    "prior_variance",
    "noise_prior_term",
    "linear_rows",
    "check_regression_targets",
    "default_init_std",
    "linear_shape",
]

WidthScaling = Literal["none", "1/d", "2/d"]


class VBLLConfigBase(HeadConfig):
    """Fields shared by the VBLL heads; each head pins ``kind`` and its defaults."""

    covariance: CovarianceKind = Field(
        "dense",
        description="Posterior covariance of each row: 'diagonal', 'dense' (Cholesky factor) or "
        "'lowrank' (F Fᵀ + D with F of rank `lowrank_rank`).",
    )
    lowrank_rank: PositiveInt = Field(3, description="Rank r of F in the 'lowrank' covariance (r <= d).")
    prior_scale: PositiveFloat = Field(
        1.0,
        description="s₀ before width scaling: the prior is N(0, s·I) with s = s₀ ('none'), s₀/d ('1/d') "
        "or 2·s₀/d ('2/d'), d = feature width; see `prior_width_scaling`.",
    )
    prior_width_scaling: WidthScaling = Field(
        "1/d", description="How the prior variance scales with the feature width d (see `prior_scale`)."
    )
    init_std: PositiveFloat | None = Field(
        None,
        description="Initial posterior standard deviation of each weight (the diagonal of L, σ, or √D); "
        "None: 1/√d.",
    )
    mean_init_std: NonNegativeFloat | None = Field(
        None,
        description="Standard deviation of the random initial posterior means; None: the prior standard "
        "deviation √s (vbll's choice). With a wide prior this gives large random initial logits; "
        "1/√d (as nn.Linear) or 0 start near uniform predictions.",
    )
    noise_init: PositiveFloat = Field(1.0, description="Initial noise standard deviation.")
    learn_noise: bool = Field(True, description="Learn the noise scale (False: keep `noise_init`).")
    noise_prior: bool = Field(
        True,
        description="Add the Wishart-type term −(1/N)·[ν'·log|Λ| − ½·s_w·tr Λ] on the noise precision "
        "Λ = diag(σ⁻²), ν' = (wishart_dof + n + 1)/2 with n the noise dimension (as in vbll).",
    )
    wishart_scale: PositiveFloat = Field(1.0, description="s_w in the noise prior term.")
    wishart_dof: PositiveFloat = Field(1.0, description="ν in ν' = (ν + n + 1)/2 of the noise prior term.")


def prior_variance(prior_scale: float, scaling: WidthScaling, width: int) -> float:
    """s = s₀ ('none'), s₀/d ('1/d', vbll's Regression) or 2·s₀/d ('2/d', vbll's DiscClassification)."""
    if scaling == "none":
        return float(prior_scale)
    if scaling == "1/d":
        return float(prior_scale) / width
    if scaling == "2/d":
        return 2.0 * float(prior_scale) / width
    raise UserInputError(f"prior_width_scaling must be 'none', '1/d' or '2/d', got {scaling!r}")


def noise_prior_term(log_std: Tensor, dof: float, scale: float) -> Tensor:
    """Negative log of the (unnormalised) Wishart-type prior on Λ = diag(exp(−2·log_std)) (n×n):

        −[ν'·log|Λ| − ½·s_w·tr(Λ)],   ν' = (ν + n + 1)/2.

    For a diagonal Λ this is a product of Gamma(ν' + 1, rate s_w/2) densities on the precisions,
    i.e. an inverse-Gamma prior on each noise variance σ_j². It is vbll's ``wishart_term`` (which
    uses +n+1 where a Wishart density on Λ would have (ν − n − 1)/2); kept so losses agree.
    """
    n = log_std.numel()
    dof_eff = (dof + n + 1.0) / 2.0
    log_prec = -2.0 * log_std
    return -(dof_eff * log_prec.sum() - 0.5 * scale * log_prec.exp().sum())


def elbo_terms(data_name: str, data_term: Tensor, head: Any) -> LossTerms:
    """The per-example negative ELBO of a VBLL head: ``data_term`` (the batch-averaged negative
    expected log-likelihood or Jensen bound, named ``data_name``) + KL/N (+ noise prior/N).

    ``head`` provides ``kl()``, ``n_train``, ``noise_log_std`` and its VBLL config."""
    n = head.n_train
    parts = {data_name: data_term, "kl": head.kl() / n}
    if head.config.noise_prior:
        parts["noise_prior"] = (
            noise_prior_term(head.noise_log_std, head.config.wishart_dof, head.config.wishart_scale) / n
        )
    return LossTerms(total=sum(parts.values()), parts=parts)  # type: ignore[arg-type]


def linear_rows(source: Any, bias: Tensor | None, rows: int, width: int, head: str) -> tuple[Tensor, Tensor | None]:
    """(weight (rows, width), bias (rows,) or None) from a module with ``.weight``/``.bias``
    (a ``DeterministicHead``, an ``nn.Linear``) or a raw tensor of rows. An explicit ``bias``
    overrides the module's."""
    if isinstance(source, Tensor):
        weight = source
    elif isinstance(getattr(source, "weight", None), Tensor):
        weight = source.weight
        if bias is None:
            bias = getattr(source, "bias", None)
    else:
        raise InputTypeError(
            f"{head}: init_from_linear takes a (C, d) weight tensor or a module with .weight "
            f"(DeterministicHead, nn.Linear), got {type(source).__name__}"
        )
    weight = weight.detach()
    if weight.shape != (rows, width):
        raise UserInputError(f"{head}: expected weight rows of shape ({rows}, {width}), got {tuple(weight.shape)}")
    if not torch.isfinite(weight).all():
        raise UserInputError(f"{head}: the weight rows contain NaN or inf")
    if bias is not None:
        bias = bias.detach()
        if bias.shape != (rows,):
            raise UserInputError(f"{head}: expected a bias of shape ({rows},), got {tuple(bias.shape)}")
    return weight, bias


def check_regression_targets(targets: Tensor, batch: int, outputs: int, head: str) -> Tensor:
    """Validate float regression targets (B,) (only when k = 1) or (B, k); return (B, k)."""
    if not isinstance(targets, Tensor):
        raise InputTypeError(f"{head}: targets must be a torch.Tensor, got {type(targets).__name__}")
    if not targets.is_floating_point():
        raise InputTypeError(f"{head}: regression targets must be floating point, got dtype {targets.dtype}")
    if targets.shape == (batch,) and outputs == 1:
        targets = targets.unsqueeze(-1)
    if targets.shape != (batch, outputs):
        allowed = f"({batch},) or ({batch}, 1)" if outputs == 1 else f"({batch}, {outputs})"
        raise UserInputError(f"{head}: expected targets of shape {allowed}, got {tuple(targets.shape)}")
    if not torch.isfinite(targets).all():
        raise UserInputError(f"{head}: targets contain NaN or inf")
    return targets


def default_init_std(init_std: float | None, width: int) -> float:
    """The configured initial posterior std, or 1/√d."""
    return float(init_std) if init_std is not None else 1.0 / math.sqrt(width)


def linear_shape(source: Any) -> tuple[int, int]:
    """(C, d) of weight rows given as a tensor or a module with ``.weight``."""
    weight = source if isinstance(source, Tensor) else getattr(source, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise InputTypeError(f"expected (C, d) weight rows or a module with .weight, got {type(source).__name__}")
    return int(weight.shape[0]), int(weight.shape[1])
