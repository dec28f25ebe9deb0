"""Discriminative VBLL classification head (Harrison, Willes & Snoek, ICLR 2024; vbll's
``DiscClassification``).

Logits z = Wφ + b + ε, ε ~ N(0, diag σ_ε²) (learned logit noise), prior w_c ~ N(0, s·I),
posterior q(w_c) = N(w̄_c, S_c) (diagonal, dense or low rank). With μ_c = w̄_cᵀφ + b_c and
v_c = φᵀS_cφ + σ²_{ε,c}, the Jensen bound

    E_q[log softmax(z)_y] ≥ μ_y − log Σ_c exp(μ_c + ½·v_c)

gives the per-example loss

    loss = −(1/B)·Σ_b [μ_y − log Σ_c exp(μ_c + ½ v_c)]_b + (1/N)·Σ_c KL(q(w_c) ‖ p) [+ (1/N)·noise prior]

(parts ``nll_bound`` = −bound, ``kl``, ``noise_prior``). Predictive, chosen by ``config.predictive``:

* ``"probit"`` (default; deterministic, so evaluation metrics repeat): softmax(μ / √(1 + (π/8)·v));
* ``"mc"``: the mean of softmax(z_s) over z_s ~ N(μ, diag v), s = 1..S (S = ``n_samples`` or
  ``config.n_samples``), drawn with ``generator``; the samples are kept for the mutual information.

Since the rows of W are independent and φ is fixed, sampling z from N(μ, diag v) is exactly
sampling the last layer. The prior variance defaults to 2·s₀/d as in vbll.

Shared covariance (``covariance_sharing="shared"``): q(w_c) = N(w̄_c, S) with one S for every
class (rows still independent), so v_c = φᵀSφ + σ²_{ε,c} needs one quadratic form per example
and a dense S has d² parameters instead of C·d² (the Adam state and the per-step work over the
Cholesky factor shrink by C; at LLM width d = 4096 that factor dominates a training step).
The KL is Σ_c KL(N(w̄_c, S) ‖ N(0, s·I)). With equal noise variances the ½·φᵀSφ shift is common
to all classes and cancels inside the softmax of the Jensen bound, so S enters the bound only as
the penalty −½·φᵀSφ; it still scales each example's logits in the probit predictive. This is an
option of ours: vbll 0.4.9 (``DiscClassification``) and the paper keep one S_c per class, which
remains the default ("per_class").
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor

from bayeshead.heads.base import check_class_targets
from bayeshead.heads.covariance import GaussianRows
from bayeshead.heads.vbll_common import (
    VBLLConfigBase,
    WidthScaling,
    elbo_terms,
)
from bayeshead.heads.vbll_rows import VBLLRowsHead
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["VBLLClassificationHead", "VBLLClassificationConfig", "probit_logits"]

_NAME = "vbll_classification head"


def probit_logits(mean: Tensor, var: Tensor) -> Tensor:
    """μ / √(1 + (π/8)·v): logits whose softmax approximates E[softmax(z)], z ~ N(μ, diag v)."""
    return mean / torch.sqrt(1.0 + (math.pi / 8.0) * var)


class VBLLClassificationConfig(VBLLConfigBase):
    kind: Literal["vbll_classification"] = "vbll_classification"
    prior_width_scaling: WidthScaling = Field(
        "2/d", description="Prior variance s₀ ('none'), s₀/d ('1/d') or 2s₀/d ('2/d', vbll's default)."
    )
    noise_init: PositiveFloat = Field(
        math.exp(-1.0), description="Initial logit-noise standard deviation σ_ε (vbll: about e⁻¹)."
    )
    predictive: Literal["probit", "mc"] = Field(
        "probit",
        description="'probit': deterministic softmax(μ/√(1+πv/8)); 'mc': Monte Carlo over last-layer samples.",
    )
    n_samples: PositiveInt = Field(100, description="Monte-Carlo samples when predictive='mc' and none are passed.")
    bias: bool = Field(False, description="Add a point-estimated logit offset b (no prior).")
    covariance_sharing: Literal["per_class", "shared"] = Field(
        "per_class",
        description="'per_class': one covariance S_c per class (vbll); 'shared': one S for all classes "
        "(d² instead of C·d² numbers when dense; a faster step at LLM width).",
    )


@HEADS.register("vbll_classification", config=VBLLClassificationConfig)
class VBLLClassificationHead(VBLLRowsHead):
    """Discriminative variational Bayesian last layer: Jensen-bound ELBO, probit or Monte-Carlo predictive."""

    Config = VBLLClassificationConfig
    config: VBLLClassificationConfig

    def shares_covariance(self) -> bool:
        return self.config.covariance_sharing == "shared"

    # -- pieces ------------------------------------------------------------------------------
    def logit_moments(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """μ = W̄φ + b and v = φᵀS_cφ + σ²_ε, both (B, C)."""
        mean, quadratic = self.mean_and_quadratic(features)
        return mean, quadratic + (2.0 * self.noise_log_std).exp()

    def jensen_bound(self, features: Tensor, targets: Tensor) -> Tensor:
        """μ_y − log Σ_c exp(μ_c + ½ v_c) per example, shape (B,)."""
        mean, var = self.logit_moments(features)
        y = check_class_targets(targets, mean.shape[0], self.num_outputs, _NAME).to(mean.device)
        linear = mean.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return linear - torch.logsumexp(mean + 0.5 * var, dim=-1)

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
        method: Literal["probit", "mc"] | None = None,
    ) -> CategoricalPredictive:
        """The predictive of ``method`` (default ``config.predictive``). ``n_samples`` and
        ``generator`` only matter for 'mc' (S = n_samples or config.n_samples)."""
        method = method or self.config.predictive
        mean, var = self.logit_moments(features)
        if method == "probit":
            return CategoricalPredictive.from_logits(probit_logits(mean, var))
        if method != "mc":
            raise ValueError(f"{_NAME}: method must be 'probit' or 'mc', got {method!r}")
        s = int(n_samples if n_samples is not None else self.config.n_samples)
        if s <= 0:
            raise ValueError(f"{_NAME}: n_samples must be positive, got {s}")
        eps = torch.randn((s, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
        return CategoricalPredictive.from_sample_logits(mean + var.sqrt() * eps)

    # -- post-hoc Laplace refinement ("+LA"; bayeshead.heads.laplace_refine) ----------------------
    def laplace_mean(self) -> tuple[Tensor, Tensor | None]:
        """The posterior row means W̄ (C, d) and the bias (or None), where the GGN is evaluated."""
        return self.posterior.mean.detach(), None if self.bias is None else self.bias.detach()

    @torch.no_grad()
    def set_row_covariances(self, covariances: Tensor) -> None:
        """Replace every S_c by ``covariances[c]``; the means and the logit noise σ_ε are kept, so
        the predictive variance becomes φᵀS_cφ + σ²_ε. A diagonal, low-rank or shared posterior is
        first switched to the dense per-class parameterization (and ``config.covariance`` to
        ``"dense"``, ``config.covariance_sharing`` to ``"per_class"``, so that a saved model
        reloads with the right shapes)."""
        if self.posterior.kind != "dense" or self.posterior.shared:
            old = self.posterior
            dense = GaussianRows(old.rows, old.dim, "dense").to(device=old.mean.device, dtype=old.mean.dtype)
            dense.mean.copy_(old.mean)
            self.posterior = dense
            self.config = self.config.model_copy(update={"covariance": "dense", "covariance_sharing": "per_class"})
        self.posterior.set_dense_covariance(covariances)

    def extra_repr(self) -> str:
        sharing = ", covariance_sharing='shared'" if self.shares_covariance() else ""
        return f"{super().extra_repr()}, prior_var={self.prior_var:.4g}, predictive={self.config.predictive!r}{sharing}"
