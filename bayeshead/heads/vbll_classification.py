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

Empirical-Bayes prior (``prior_scale_rule="evidence"``; :mod:`bayeshead.heads.vbll_prior`):
instead of a fixed s, the head collects the features and labels of its first ``evidence_examples``
training examples (while collecting, s = 1/mean‖φ‖², a prior logit standard deviation of 1 on any
backbone) and then sets s to the maximiser of the Laplace-approximated evidence of the linear
softmax model on them (MacKay 1992). ``prior_scale`` and ``prior_width_scaling`` are then unused;
s is a buffer, saved and loaded with the head.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor

from bayeshead.errors import UserInputError
from bayeshead.heads.base import check_class_targets, check_features
from bayeshead.heads.covariance import GaussianRows
from bayeshead.heads.vbll_common import (
    VBLLConfigBase,
    WidthScaling,
    elbo_terms,
)
from bayeshead.heads.vbll_prior import evidence_prior_var, feature_norm_prior_var
from bayeshead.heads.vbll_rows import VBLLRowsHead
from bayeshead.registry import HEADS
from bayeshead.search_space import LogUniform, SearchSpace
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["VBLLClassificationHead", "VBLLClassificationConfig", "probit_logits"]

_NAME = "vbll_classification head"


def probit_logits(mean: Tensor, var: Tensor) -> Tensor:
    """μ / √(1 + (π/8)·v): logits whose softmax approximates E[softmax(z)], z ~ N(μ, diag v)."""
    return mean / torch.sqrt(1.0 + (math.pi / 8.0) * var)


#: the tuner's range of the fixed prior scale s₀
PRIOR_SCALE_RANGE = LogUniform(low=0.1, high=100.0)


class VBLLClassificationConfig(VBLLConfigBase):
    kind: Literal["vbll_classification"] = "vbll_classification"
    search_space: ClassVar[SearchSpace] = {
        # with prior_scale_rule=evidence the scale is chosen from the data and prior_scale is unused
        "head.prior_scale": PRIOR_SCALE_RANGE.model_copy(update={"when": {"head.prior_scale_rule": "fixed"}}),
        "head.noise_init": LogUniform(low=0.05, high=1.0),
    }
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
    prior_scale_rule: Literal["fixed", "evidence"] = Field(
        "fixed",
        description="'fixed': prior variance from `prior_scale` and `prior_width_scaling`; 'evidence': "
        "empirical Bayes, the s maximising the Laplace evidence of the first `evidence_examples` training "
        "examples (invariant to the feature scale; prior_scale is then unused).",
    )
    evidence_examples: PositiveInt = Field(
        512,
        description="prior_scale_rule='evidence': how many of the first training examples (or all, if "
        "fewer) choose s; until then s = 1/mean‖φ‖² (prior logit standard deviation 1).",
    )


@HEADS.register("vbll_classification", config=VBLLClassificationConfig)
class VBLLClassificationHead(VBLLRowsHead):
    """Discriminative variational Bayesian last layer: Jensen-bound ELBO, probit or Monte-Carlo predictive."""

    Config = VBLLClassificationConfig
    config: VBLLClassificationConfig

    def __init__(self, in_features: int, num_outputs: int, config: VBLLClassificationConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        if self.empirical_bayes:
            # s (float64, for 1/s and log s of tiny variances) and the stage: 0 not started,
            # 1 collecting the first examples, 2 chosen by the evidence
            self.register_buffer("eb_prior_var", torch.tensor(self._fixed_prior_var, dtype=torch.float64))
            self.register_buffer("eb_stage", torch.tensor(0, dtype=torch.long))
        self._means_given = False
        self._eb_features: list[Tensor] = []
        self._eb_labels: list[Tensor] = []

    @torch.no_grad()
    def init_from_linear(self, weight: Any, bias: Tensor | None = None) -> Any:
        """As :meth:`VBLLRowsHead.init_from_linear`; the empirical-Bayes start then keeps these means."""
        super().init_from_linear(weight, bias)
        self._means_given = True
        return self

    def shares_covariance(self) -> bool:
        return self.config.covariance_sharing == "shared"

    # -- prior variance (fixed, or empirical Bayes: bayeshead.heads.vbll_prior) ---------------------
    @property
    def empirical_bayes(self) -> bool:
        return self.config.prior_scale_rule == "evidence"

    @property
    def prior_var(self) -> float:
        """s of the prior N(0, s·I): the fixed value, or the current empirical-Bayes estimate."""
        if self.empirical_bayes and hasattr(self, "eb_prior_var"):
            return float(self.eb_prior_var)
        return self._fixed_prior_var

    @prior_var.setter
    def prior_var(self, value: float) -> None:
        self._fixed_prior_var = float(value)

    @torch.no_grad()
    def update_prior(self, features: Tensor, targets: Tensor) -> float:
        """The empirical-Bayes step (``prior_scale_rule="evidence"``, training batches only).

        First batch: s = 1/mean‖φ‖², S_c = s·I (unless ``init_std`` is set), and means redrawn from
        N(0, (0.1·√s)²), initial logits of standard deviation 0.1 (unless ``mean_init_std`` is set or
        the means came from ``init_from_linear``). The batches are kept (a batch equal to the last
        one, seen again by another head step or by the adapter block, once) until ``evidence_examples``
        examples (or ``n_train``, if fewer) are in; then s ← argmax of the Laplace evidence on them
        (:func:`~bayeshead.heads.vbll_prior.evidence_prior_var`) and the kept features are dropped.
        Returns s."""
        stage = int(self.eb_stage)
        if stage == 2:
            return float(self.eb_prior_var)
        if stage == 0:
            start = feature_norm_prior_var(features)
            if self.config.init_std is None:
                self.posterior.reset_covariance(math.sqrt(start))
            if self.config.mean_init_std is None and not self._means_given:
                mean = self.posterior.mean
                mean.copy_(torch.randn_like(mean) * (0.1 * math.sqrt(start)))
            self.eb_prior_var.fill_(start)
            self.eb_stage.fill_(1)
        phi = features.detach().double().cpu()
        if self._eb_features and torch.equal(phi, self._eb_features[-1]):
            return float(self.eb_prior_var)  # the same batch again (head steps, then the adapter block)
        self._eb_features.append(phi)
        self._eb_labels.append(targets.detach().long().cpu())
        wanted = min(self.config.evidence_examples, self.config.n_train or self.config.evidence_examples)
        if sum(len(y) for y in self._eb_labels) >= wanted:
            phi, y = torch.cat(self._eb_features), torch.cat(self._eb_labels)
            self.eb_prior_var.fill_(evidence_prior_var(phi, y, self.num_outputs))
            self.eb_stage.fill_(2)
            self._eb_features, self._eb_labels = [], []
        return float(self.eb_prior_var)

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
        if self.empirical_bayes and self.training and torch.is_grad_enabled():
            # before the forward pass: the first call resets S_c in place
            phi = check_features(features, self.in_features, _NAME)
            self.update_prior(phi, check_class_targets(targets, phi.shape[0], self.num_outputs, _NAME))
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
            raise UserInputError(f"{_NAME}: method must be 'probit' or 'mc', got {method!r}")
        s = int(n_samples if n_samples is not None else self.config.n_samples)
        if s <= 0:
            raise UserInputError(f"{_NAME}: n_samples must be positive, got {s}")
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
