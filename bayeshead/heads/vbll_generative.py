"""Generative VBLL classification head (Harrison, Willes & Snoek, ICLR 2024; vbll's
``GenClassification``).

Class-conditional features p(φ | y = c, μ_c) = N(μ_c, Σ), Σ = diag(exp(2·noise_log_std))
learned, uniform class prior, prior μ_c ~ N(0, s·I), posterior q(μ_c) = N(m_c, S_c) with S_c
diagonal (as vbll), dense or low rank (ours). The predictive logits are the marginal class
likelihoods

    ℓ_c(φ) = log N(φ | m_c, Σ + S_c),     p(y = c | φ) = softmax(ℓ(φ))_c,

and the per-example Jensen bound on E_q[log p(y | φ)] is

    log N(φ | m_y, Σ) − ½·tr(S_y Σ⁻¹) − log Σ_c exp ℓ_c(φ).

Loss = −(1/B)·Σ_b bound_b + (1/N)·Σ_c KL(q(μ_c) ‖ p) [+ (1/N)·Wishart-type term on Σ⁻¹]
(parts ``nll_bound`` = −bound, ``kl``, ``noise_prior``; the noise term has n = d). Cost of the logits per
batch: O(B·C·d) diagonal, O(B·C·d·r + C·d·r²) low rank, O(C·d³ + B·C·d²) dense (one d×d
Cholesky factorisation of Σ + S_c per class). The prior variance defaults to s₀ (no width
scaling), as in vbll.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import torch
from pydantic import Field, PositiveFloat
from torch import Tensor, nn

from bayeshead.heads.base import UncertaintyHead, check_class_targets, check_features
from bayeshead.heads.covariance import CovarianceKind, GaussianRows
from bayeshead.heads.vbll_common import (
    VBLLConfigBase,
    WidthScaling,
    default_init_std,
    elbo_terms,
    linear_rows,
    linear_shape,
    prior_variance,
)
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["VBLLGenerativeHead", "VBLLGenerativeConfig"]

_NAME = "vbll_generative_classification head"
_LOG_2PI = math.log(2 * math.pi)


class VBLLGenerativeConfig(VBLLConfigBase):
    kind: Literal["vbll_generative_classification"] = "vbll_generative_classification"
    covariance: CovarianceKind = Field(
        "diagonal",
        description="Covariance S_c of q(μ_c): 'diagonal' (vbll's only one), 'dense' or 'lowrank'.",
    )
    prior_width_scaling: WidthScaling = Field(
        "none", description="Prior variance of the class means: s₀ ('none', vbll), s₀/d or 2s₀/d."
    )
    noise_init: PositiveFloat = Field(1.0, description="Initial feature standard deviation √Σ_ii.")


@HEADS.register("vbll_generative_classification", config=VBLLGenerativeConfig)
class VBLLGenerativeHead(UncertaintyHead):
    """Generative VBLL classifier: Gaussian class-conditional features with Bayesian class means."""

    Config = VBLLGenerativeConfig
    config: VBLLGenerativeConfig

    def __init__(self, in_features: int, num_outputs: int, config: VBLLGenerativeConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        cfg = self.config
        self.prior_var = prior_variance(cfg.prior_scale, cfg.prior_width_scaling, in_features)
        self.posterior = GaussianRows(
            num_outputs,
            in_features,
            cfg.covariance,
            rank=cfg.lowrank_rank if cfg.covariance == "lowrank" else None,
            init_std=default_init_std(cfg.init_std, in_features),
            mean_std=0.1 * math.sqrt(self.prior_var),
        )
        self.noise_log_std = nn.Parameter(
            torch.full((in_features,), math.log(cfg.noise_init)), requires_grad=cfg.learn_noise
        )

    # -- pieces ------------------------------------------------------------------------------
    def noise_var(self) -> Tensor:
        """diag(Σ), shape (d,)."""
        return (2.0 * self.noise_log_std).exp()

    def _phi(self, features: Tensor) -> Tensor:
        return check_features(features, self.in_features, _NAME).to(self.posterior.mean.dtype)

    def class_log_likelihoods(self, phi: Tensor) -> Tensor:
        """ℓ_c(φ) = log N(φ | m_c, Σ + S_c), shape (B, C); ``phi`` already validated."""
        post = self.posterior
        diff = phi[:, None, :] - post.mean  # (B, C, d)
        if post.kind == "diagonal":
            total = self.noise_var() + post.scale_diag().pow(2)  # (C, d)
            return -0.5 * (_LOG_2PI + total.log() + diff.pow(2) / total).sum(-1)
        if post.kind == "lowrank":
            dist = torch.distributions.LowRankMultivariateNormal(
                post.mean,
                cov_factor=post.factor,
                cov_diag=self.noise_var() + post.scale_diag().pow(2),
                validate_args=False,
            )
            return dist.log_prob(phi[:, None, :])
        chol_s = post.cholesky()
        cov = chol_s @ chol_s.transpose(-1, -2) + torch.diag_embed(self.noise_var()).expand_as(chol_s)
        chol = torch.linalg.cholesky(cov)  # (C, d, d)
        solved = torch.linalg.solve_triangular(chol, diff.permute(1, 2, 0), upper=False)  # (C, d, B)
        maha = solved.pow(2).sum(1).transpose(0, 1)  # (B, C)
        logdet = 2.0 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)  # (C,)
        return -0.5 * (self.in_features * _LOG_2PI + logdet + maha)

    def logits(self, features: Tensor) -> Tensor:
        """The predictive logits ℓ_c(φ), shape (B, C)."""
        return self.class_log_likelihoods(self._phi(features))

    def jensen_bound(self, features: Tensor, targets: Tensor) -> Tensor:
        """log N(φ | m_y, Σ) − ½ tr(S_y Σ⁻¹) − logsumexp_c ℓ_c(φ), shape (B,)."""
        phi = self._phi(features)
        y = check_class_targets(targets, phi.shape[0], self.num_outputs, _NAME).to(phi.device)
        noise_var = self.noise_var()
        diff = phi - self.posterior.mean[y]
        linear = -0.5 * (_LOG_2PI + 2.0 * self.noise_log_std + diff.pow(2) / noise_var).sum(-1)
        trace = self.posterior.weighted_trace(1.0 / noise_var)[y]
        return linear - 0.5 * trace - torch.logsumexp(self.class_log_likelihoods(phi), dim=-1)

    def kl(self) -> Tensor:
        """Σ_c KL(q(μ_c) ‖ N(0, s·I))."""
        return self.posterior.kl(self.prior_var)

    # -- interface ---------------------------------------------------------------------------
    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        # −(Jensen bound): an upper bound on the expected NLL, named for what it holds.
        nll_bound = -self.jensen_bound(features, targets).mean()
        return elbo_terms("nll_bound", nll_bound, self)

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """softmax(ℓ(φ)), closed form; ``n_samples``/``generator`` are ignored."""
        return CategoricalPredictive.from_logits(self.logits(features))

    # -- initialisation from a point estimate ----------------------------------------------------
    @torch.no_grad()
    def init_from_linear(self, weight: Any, bias: Tensor | None = None) -> VBLLGenerativeHead:
        """Set m_c = Σ·w_c from trained rows w_c, so that with S_c = 0 the logits are
        w_cᵀφ − ½·w_cᵀΣw_c + const: the linear part of a softmax head with weights W. A free
        bias cannot be represented (the implied bias is −½·m_cᵀΣ⁻¹m_c); a given one is ignored
        with a warning."""
        w, b = linear_rows(weight, bias, self.num_outputs, self.in_features, _NAME)
        if b is not None and bool((b != 0).any()):
            warnings.warn(
                f"{_NAME}: a free bias has no counterpart in the generative model and is ignored",
                stacklevel=2,
            )
        self.posterior.set_mean(w.to(self.noise_log_std.dtype) * self.noise_var())
        return self

    @classmethod
    def from_linear(
        cls, weight: Any, bias: Tensor | None = None, config: VBLLGenerativeConfig | None = None
    ) -> VBLLGenerativeHead:
        """A new head with m_c = Σ·w_c (see :meth:`init_from_linear`)."""
        rows, width = linear_shape(weight)
        return cls(width, rows, config).init_from_linear(weight, bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, prior_var={self.prior_var:.4g}, covariance={self.config.covariance!r}"
