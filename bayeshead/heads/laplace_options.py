"""Per-option last-layer Laplace head (MacKay 1992; Daxberger et al. 2021, "Laplace Redux"),
registered as ``laplace_options``.

Training is the MAP per-option head of :mod:`bayeshead.heads.option_deterministic` (one weight
vector w ∈ R^d scores every option, z_{q,k} = wᵀh_{q,k} (+ b_k), softmax over each question's own
n_q options, loss mean NLL + (λ/2)·‖w‖², λ = ``weight_decay``). After training,
:meth:`LaplaceOptionHead.fit_posthoc` on the training option features fits a Gaussian over w at
the MAP w* (the position bias b stays a point estimate):

    q(w) = N(w*, Σ),   Σ = P⁻¹,   P = G + δ·I,
    G = Σ_q H_qᵀ (diag(p_q) − p_q p_qᵀ) H_q,

H_q the n_q × d option features of question q and p_q its MAP softmax; the logits are linear in w,
so the GGN G is the exact Hessian of the summed NLL (:mod:`bayeshead.heads.option_laplace_math`,
float64). G is eigendecomposed once, G = Q diag(λ) Qᵀ, so that Σ = Q diag(1/(λ + δ)) Qᵀ for any δ.
δ (the prior N(0, δ⁻¹ I) on w) is, by ``prior_optimization``,

* ``marglik`` (default): the maximiser of the Laplace log evidence (MacKay 1992)

      log p(D | δ) ≈ Σ_q log p(y_q | w*) − ½ δ ‖w*‖² + ½ d log δ − ½ log det(G + δ I),

  strictly concave in log δ, found by Brent's bounded search over
  log10 δ ∈ [``marglik_log10_min``, ``marglik_log10_max``] (a warning when it ends at a limit);
* ``none``: δ = ``prior_precision``.

(The MAP training's weight decay is the prior N(0, (N·λ)⁻¹ I) for N training questions; as in
laplace-torch, the evidence-chosen δ is used with the mode found under it.)

Predictive: the GLM (linearised, here exact in w) logits of question q are jointly Gaussian,

    f_q ~ N(H_q w* + b, H_q Σ H_qᵀ),

correlated across the question's options through the shared w, and by ``link_approx``

* ``probit`` (default): p_k = softmax_k(μ_k / √(1 + (π/8)·v_k)), v_k = h_kᵀ Σ h_k, over the
  question's own options;
* ``mc``: (1/S)·Σ_s softmax(f_s) with f_s drawn jointly per question (Cholesky of the n_q × n_q
  covariance, in float64); the per-sample probabilities are kept (mutual information).

Before :meth:`fit_posthoc`, ``predict`` refuses (:class:`~bayeshead.errors.NotFittedError`) except
inside :meth:`~bayeshead.heads.base.UncertaintyHead.training_predictive`, where it is the MAP
softmax. The eigendecomposition of G, δ, the MAP NLL and ``fitted`` are float64 (bool) buffers of
fixed shape, so a saved state_dict restores the fitted posterior.

With option features h_k = e_k ⊗ x and w the stacked class rows, G is the full softmax GGN
Σ_n Λ_n ⊗ x_n x_nᵀ of a bias-free class-row head, and this head is the class-row ``laplace`` head
with ``hessian_structure='full'`` and ``bias=False`` (same posterior, evidence and predictive).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt, model_validator
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.glm_predictive import psd_cholesky
from bayeshead.heads.laplace import LaplaceHeadConfig
from bayeshead.heads.option_deterministic import DeterministicOptionConfig, DeterministicOptionHead
from bayeshead.heads.option_laplace_math import (
    maximise_option_log_evidence,
    option_ggn,
    option_log_evidence,
    option_log_probs,
)
from bayeshead.heads.option_scoring import (
    OptionPredictive,
    check_counts,
    check_option_targets,
    pad_segments,
    unpad_segments,
)
from bayeshead.posthoc_bounds import warn_at_bound
from bayeshead.registry import HEADS
from bayeshead.search_space import SearchSpace

__all__ = ["LaplaceOptionConfig", "LaplaceOptionHead"]


class LaplaceOptionConfig(DeterministicOptionConfig):
    kind: Literal["laplace_options"] = "laplace_options"  # type: ignore[assignment]
    search_space: ClassVar[SearchSpace] = LaplaceHeadConfig.search_space  # the class-row head's
    prior_precision: PositiveFloat = Field(
        1.0, description="δ of the prior N(0, δ⁻¹ I) on w when prior_optimization='none' (unused by 'marglik')."
    )
    prior_optimization: Literal["marglik", "none"] = Field(
        "marglik",
        description="'marglik': δ maximising the Laplace log evidence (Brent on log δ); 'none': prior_precision.",
    )
    marglik_log10_min: float = Field(-6.0, description="Lower limit of log10 δ for the evidence search.")
    marglik_log10_max: float = Field(6.0, description="Upper limit of log10 δ for the evidence search.")
    link_approx: Literal["probit", "mc"] = Field(
        "probit", description="'probit': softmax(μ/√(1+πv/8)); 'mc': Monte Carlo over the joint logit Gaussian."
    )
    n_samples: PositiveInt = Field(100, description="Monte Carlo samples of the 'mc' link when predict gets none.")

    @model_validator(mode="after")
    def _check(self) -> LaplaceOptionConfig:
        if self.marglik_log10_min >= self.marglik_log10_max:
            raise UserInputError(
                f"marglik_log10_min must be below marglik_log10_max, got {self.marglik_log10_min} and "
                f"{self.marglik_log10_max}"
            )
        return self


@HEADS.register("laplace_options", config=LaplaceOptionConfig)
class LaplaceOptionHead(DeterministicOptionHead):
    """Per-option last-layer Laplace: MAP option head + post-hoc Gaussian over the shared w."""

    Config = LaplaceOptionConfig  # type: ignore[assignment]
    config: LaplaceOptionConfig  # type: ignore[assignment]
    posthoc_data = "train"

    def __init__(self, in_features: int, max_options: int, config: LaplaceOptionConfig | None = None) -> None:
        super().__init__(in_features, max_options, config)
        d = self.in_features
        f64 = torch.float64
        self.register_buffer("ggn_eigvals", torch.zeros(d, dtype=f64))  # λ of G
        self.register_buffer("ggn_eigvecs", torch.zeros(d, d, dtype=f64))  # Q of G (columns)
        self.register_buffer("prior_precision", torch.tensor(self.config.prior_precision, dtype=f64))  # δ
        self.register_buffer("map_nll", torch.zeros((), dtype=f64))  # Σ_q −log p(y_q | w*)
        self.register_buffer("n_data", torch.zeros((), dtype=torch.int64))  # training questions
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # -- post-hoc fit --------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def _require_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{self._name}: {what} needs the posterior; call fit_posthoc(features, targets) first")

    def map_weight(self) -> Tensor:
        """w* (d,), float64, detached."""
        return self.weight.detach().to(torch.float64)

    @torch.no_grad()
    def fit_posthoc(
        self, features: Tensor, targets: Tensor, *, counts: Tensor | list[int] | None = None, **kwargs: Any
    ) -> dict[str, float]:
        """Fit the posterior at the current (MAP) w on the training data: padded option features
        (Q, K', d) with NaN rows for absent options (what the trainer passes), or flat option rows
        (N, d) with ``counts`` (Q,); ``targets`` (Q,). Then δ by ``config.prior_optimization``.
        Returns the chosen prior precision and the log evidence at it."""
        if kwargs:
            raise InputTypeError(f"{self._name}: unexpected fit_posthoc arguments {sorted(kwargs)}; it takes counts=")
        if counts is None:
            features, counts = self.unpad(features)
        features, counts = self.check_inputs(features, counts)
        y = check_option_targets(targets, counts, self._name)
        weight, offsets = self.map_weight(), self.offsets(counts)
        log_probs = option_log_probs(features, counts, weight, offsets)
        starts = torch.cumsum(counts, 0) - counts
        ggn = option_ggn(features, counts, weight, offsets)
        eigvals, eigvecs = torch.linalg.eigh(ggn)
        self.ggn_eigvals.copy_(eigvals)
        self.ggn_eigvecs.copy_(eigvecs)
        self.map_nll.copy_(-log_probs[starts + y].sum())
        self.n_data.fill_(counts.numel())
        self.fitted.fill_(True)
        if self.config.prior_optimization == "marglik":
            self.optimize_prior_precision()
        else:
            self.set_prior_precision(self.config.prior_precision)
        return {
            "prior_precision": float(self.prior_precision),
            "log_evidence": float(self.log_marginal_likelihood()),
        }

    @torch.no_grad()
    def set_prior_precision(self, prior_precision: float | Tensor) -> None:
        """Set δ > 0 (Σ = Q diag(1/(λ + δ)) Qᵀ follows; nothing to refactorise)."""
        self._require_fitted("set_prior_precision")
        delta = float(prior_precision)
        if not (delta > 0 and math.isfinite(delta)):
            raise UserInputError(f"{self._name}: prior precision must be positive and finite, got {delta}")
        self.prior_precision.fill_(delta)

    def log_marginal_likelihood(self, prior_precision: float | Tensor | None = None) -> Tensor:
        """log p(D | δ) ≈ −Σ_q NLL_q(w*) − ½ δ ‖w*‖² + ½ d log δ − ½ log det(G + δ I), float64
        (δ = the fitted one by default; differentiable in a tensor δ)."""
        self._require_fitted("log_marginal_likelihood")
        delta = self.prior_precision if prior_precision is None else prior_precision
        return option_log_evidence(self.ggn_eigvals, self.map_nll, self.map_weight().pow(2).sum(), delta)

    def optimize_prior_precision(self) -> float:
        """δ maximising :meth:`log_marginal_likelihood` over log10 δ in
        [``marglik_log10_min``, ``marglik_log10_max``] (Brent's bounded search); sets and returns it."""
        self._require_fitted("optimize_prior_precision")
        cfg = self.config
        ln10 = math.log(10.0)
        bounds = (cfg.marglik_log10_min * ln10, cfg.marglik_log10_max * ln10)
        weight_sq = float(self.map_weight().pow(2).sum())
        delta, side = maximise_option_log_evidence(self.ggn_eigvals, float(self.map_nll), weight_sq, bounds)
        if side is not None:
            warn_at_bound(
                f"{self._name}: prior precision (marglik, log10 δ)", math.log10(delta), cfg.marglik_log10_min,
                cfg.marglik_log10_max, side,
                "w* is ~0 (upper) or the data barely constrain w (lower); widen marglik_log10_min/marglik_log10_max, "
                "check the weight decay, or use prior_optimization='none'",
            )
        self.set_prior_precision(delta)
        return delta

    def posterior_root(self) -> Tensor:
        """R = Q diag((λ + δ)^{-1/2}) (d, d), float64, with Σ = R Rᵀ."""
        self._require_fitted("posterior_root")
        lam = self.ggn_eigvals.to(torch.float64).clamp_min(0.0)
        return self.ggn_eigvecs.to(torch.float64) * (lam + self.prior_precision.to(torch.float64)).rsqrt()

    def precision_matrix(self) -> Tensor:
        """P = G + δ I (d, d), float64."""
        self._require_fitted("precision_matrix")
        q = self.ggn_eigvecs.to(torch.float64)
        lam = self.ggn_eigvals.to(torch.float64).clamp_min(0.0) + self.prior_precision.to(torch.float64)
        return (q * lam) @ q.transpose(0, 1)

    def covariance(self) -> Tensor:
        """Σ = P⁻¹ (d, d), float64."""
        root = self.posterior_root()
        return root @ root.transpose(0, 1)

    # -- prediction ------------------------------------------------------------------------------
    def _moments(self, features: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        """μ = H w* + b (N,) and P = H R (N, d), float64, on validated inputs (H Σ Hᵀ = P Pᵀ)."""
        h = features.to(torch.float64)
        mean = h @ self.map_weight()
        offsets = self.offsets(counts)
        if offsets is not None:
            mean = mean + offsets.detach().to(torch.float64)
        return mean, h @ self.posterior_root()

    def logit_moments(self, features: Tensor, counts: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """μ_k = h_kᵀw* + b_k and v_k = h_kᵀ Σ h_k, both flat (N,), float64."""
        features, counts = self.check_inputs(features, counts)
        mean, proj = self._moments(features, counts)
        return mean, proj.pow(2).sum(-1)

    def joint_covariance(self, features: Tensor, counts: Tensor | list[int]) -> list[Tensor]:
        """H_q Σ H_qᵀ for every question q (an n_q × n_q matrix each), float64."""
        features, counts = self.check_inputs(features, counts)
        _, proj = self._moments(features, counts)
        return [block @ block.T for block in torch.split(proj, counts.tolist())]

    def sample_logits(
        self, features: Tensor, counts: Tensor | list[int], n_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """S joint draws f_s ~ N(H_q w* + b, H_q Σ H_qᵀ) per question, flat (S, N), float64. Each
        question's covariance is padded to K = max n_q with 1 on the unused diagonal (which leaves
        the used block's Cholesky factor unchanged) and factored in float64."""
        if n_samples <= 0:
            raise UserInputError(f"{self._name}: n_samples must be positive, got {n_samples}")
        features, counts = self.check_inputs(features, counts)
        mean, proj = self._moments(features, counts)
        padded = pad_segments(proj.transpose(0, 1), counts, fill=0.0).permute(1, 2, 0)  # (Q, K, d)
        unused = pad_segments(torch.zeros_like(mean), counts, fill=1.0)  # (Q, K): 1 where absent
        cov = padded @ padded.transpose(-1, -2) + torch.diag_embed(unused)
        chol = psd_cholesky(cov)
        k = cov.shape[-1]
        eps = torch.randn((n_samples, counts.numel(), k), generator=generator, dtype=torch.float64, device=mean.device)
        noise = torch.einsum("qij,sqj->sqi", chol, eps)
        return mean + unpad_segments(noise, counts)

    def predict_flat(
        self,
        features: Tensor,
        counts: Tensor | list[int],
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
        link_approx: Literal["probit", "mc"] | None = None,
    ) -> OptionPredictive:
        """The GLM predictive with ``link_approx`` (default ``config.link_approx``); ``n_samples``
        and ``generator`` matter for 'mc' only. Before :meth:`fit_posthoc` it raises
        :class:`~bayeshead.errors.NotFittedError`, except inside :meth:`training_predictive`, where
        it is the MAP softmax."""
        if not self.is_fitted:
            self.refuse_unfitted("the Laplace posterior", "head.fit_posthoc(train_features, train_targets)")
            return super().predict_flat(features, counts)
        link = link_approx or self.config.link_approx
        if link == "probit":
            mean, var = self.logit_moments(features, counts)
            counts_t = check_counts(counts, mean.shape[0], self._name).to(mean.device)
            return OptionPredictive.from_logits(mean * torch.rsqrt(1.0 + (math.pi / 8.0) * var), counts_t)
        if link != "mc":
            raise UserInputError(f"{self._name}: link_approx must be 'probit' or 'mc', got {link!r}")
        s = int(n_samples if n_samples is not None else self.config.n_samples)
        z = self.sample_logits(features, counts, s, generator)
        return OptionPredictive.from_sample_logits(z, check_counts(counts, z.shape[1], self._name).to(z.device))

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"{super().extra_repr()}, prior_optimization={cfg.prior_optimization!r}, "
            f"link_approx={cfg.link_approx!r}, fitted={self.is_fitted}"
        )
