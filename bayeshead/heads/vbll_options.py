"""Per-option VBLL head: a variational Bayesian last layer scoring each answer option
(Harrison, Willes & Snoek, ICLR 2024, applied to the per-option formulation).

One weight vector w ∈ R^d is shared by all options, prior N(0, s·I), posterior q(w) = N(w̄, S)
(diagonal, dense or low rank; :class:`~bayeshead.heads.covariance.GaussianRows` with one row),
plus logit noise ε_k ~ N(0, σ²) independent per option. For one question with option features
H = [h_1 … h_n]ᵀ (n × d) the logits z = H w + b + ε are jointly Gaussian:

    z ~ N(μ, Σ_z),   μ = H w̄ + b,   Σ_z = H S Hᵀ + σ² I,

correlated across the options of a question through the shared w. With v_k = h_kᵀ S h_k + σ²
(the diagonal of Σ_z), Jensen's inequality on E_q[log softmax(z)_y] gives the bound

    E_q[log softmax(z)_y] ≥ μ_y − log Σ_{k<n} exp(μ_k + ½·v_k),

(E[z_y] = μ_y and E[log Σ exp z_k] ≤ log Σ E[exp z_k] = log Σ exp(μ_k + ½ v_k); only the
marginal variances enter), and the per-question loss

    loss = −(1/Q)·Σ_q bound_q + (1/N)·KL(q(w) ‖ N(0, s·I)) [+ (1/N)·noise prior],

N = training questions (parts ``nll_bound``, ``kl``, ``noise_prior``). Predictive, by
``config.predictive``:

* ``"probit"`` (default, deterministic): softmax_k(μ_k / √(1 + (π/8)·v_k));
* ``"mc"``: (1/S)·Σ_s softmax(z_s) with z_s ~ N(μ, H S Hᵀ + σ² I) drawn jointly per question
  (Cholesky of the n × n covariance, in float64), so the correlation through w is kept.

With option features h_k = e_k ⊗ x (x ∈ R^d placed in block k of R^{C·d}) and w the stacked
class rows, μ_k = w̄_kᵀx, H S Hᵀ = [x ᵀ S_{kj} x] and this head is the class-row VBLL head
(:class:`~bayeshead.heads.vbll_classification.VBLLClassificationHead`) with a joint posterior
over the rows; a block-diagonal S gives exactly its independent rows.

``training.laplace_refine=true`` (the "+LA" variant,
:func:`~bayeshead.heads.laplace_refine.refine_options_with_laplace`) replaces S after training by
the Laplace covariance at the mean, S = (G + δI)⁻¹ with the per-option softmax GGN G at w̄
(:func:`~bayeshead.heads.option_laplace_math.option_ggn`); w̄, b and σ are kept.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor, nn

from bayeshead.errors import UserInputError
from bayeshead.heads.covariance import GaussianRows
from bayeshead.heads.glm_predictive import psd_cholesky
from bayeshead.heads.option_base import OptionHead
from bayeshead.heads.option_scoring import (
    OptionPredictive,
    check_option_targets,
    pad_segments,
    segment_logsumexp,
    unpad_segments,
)
from bayeshead.heads.vbll_classification import PRIOR_SCALE_RANGE, VBLLClassificationConfig
from bayeshead.heads.vbll_common import (
    VBLLConfigBase,
    WidthScaling,
    default_init_std,
    elbo_terms,
    prior_variance,
)
from bayeshead.registry import HEADS
from bayeshead.search_space import SearchSpace
from bayeshead.types import LossTerms

__all__ = ["VBLLOptionConfig", "VBLLOptionHead"]


class VBLLOptionConfig(VBLLConfigBase):
    kind: Literal["vbll_options"] = "vbll_options"
    # the class-row head's, with the prior scale always searched (no evidence rule here)
    search_space: ClassVar[SearchSpace] = {
        **VBLLClassificationConfig.search_space,
        "head.prior_scale": PRIOR_SCALE_RANGE,
    }
    position_bias: bool = Field(
        False, description="Add a point-estimated logit offset b_k for each option position k < max_options."
    )
    prior_width_scaling: WidthScaling = Field(
        "2/d", description="Prior variance s₀ ('none'), s₀/d ('1/d') or 2s₀/d ('2/d', vbll's classification default)."
    )
    noise_init: PositiveFloat = Field(math.exp(-1.0), description="Initial logit-noise standard deviation σ.")
    predictive: Literal["probit", "mc"] = Field(
        "probit", description="'probit': softmax(μ/√(1+πv/8)); 'mc': Monte Carlo over the joint logit Gaussian."
    )
    n_samples: PositiveInt = Field(100, description="Monte-Carlo samples when predictive='mc' and none are passed.")


@HEADS.register("vbll_options", config=VBLLOptionConfig)
class VBLLOptionHead(OptionHead):
    """q(w) = N(w̄, S) shared by all options; joint Gaussian logits per question."""

    Config: ClassVar[type[VBLLOptionConfig]] = VBLLOptionConfig  # type: ignore[assignment]
    config: VBLLOptionConfig

    def __init__(self, in_features: int, max_options: int, config: VBLLOptionConfig | None = None) -> None:
        super().__init__(in_features, max_options, config)
        cfg = self.config
        self.prior_var = prior_variance(cfg.prior_scale, cfg.prior_width_scaling, in_features)
        self.posterior = GaussianRows(
            1,
            in_features,
            cfg.covariance,
            rank=cfg.lowrank_rank if cfg.covariance == "lowrank" else None,
            init_std=default_init_std(cfg.init_std, in_features),
            mean_std=math.sqrt(self.prior_var) if cfg.mean_init_std is None else float(cfg.mean_init_std),
        )
        self.noise_log_std = nn.Parameter(torch.tensor([math.log(cfg.noise_init)]), requires_grad=cfg.learn_noise)

    # -- parameters ----------------------------------------------------------------------------
    @property
    def mean(self) -> Tensor:
        """w̄, (d,)."""
        return self.posterior.mean[0]

    def covariance(self) -> Tensor:
        """S as a dense (d, d) matrix (tests and small d)."""
        return self.posterior.covariance()[0]

    @property
    def noise_var(self) -> Tensor:
        """σ², a 0-dim tensor."""
        return (2.0 * self.noise_log_std[0]).exp()

    @torch.no_grad()
    def init_from_vector(self, mean: Tensor, bias: Tensor | None = None) -> VBLLOptionHead:
        """Set w̄ (d,) and, if given, the position bias (max_options,); S and σ unchanged."""
        if mean.shape != (self.in_features,):
            raise UserInputError(f"{self._name}: expected a mean of shape ({self.in_features},), got {tuple(mean.shape)}")
        self.posterior.set_mean(mean[None])
        if bias is not None:
            if self.position_bias is None:
                raise UserInputError(f"{self._name}: got a bias but the head has none; set position_bias=True in its config")
            self.position_bias.copy_(bias.to(self.position_bias.dtype))
        return self

    @torch.no_grad()
    def set_covariance(self, covariance: Tensor) -> None:
        """Set S (d, d), symmetric positive definite. A diagonal or low-rank posterior is first
        switched to the dense parameterization (and ``config.covariance`` to ``"dense"``, so that a
        saved model reloads with the right shapes), as the class-row VBLL head's
        ``set_row_covariances`` does; w̄ is kept."""
        if self.posterior.kind != "dense":
            old = self.posterior
            dense = GaussianRows(1, old.dim, "dense").to(device=old.mean.device, dtype=old.mean.dtype)
            dense.mean.copy_(old.mean)
            self.posterior = dense
            self.config = self.config.model_copy(update={"covariance": "dense"})
        self.posterior.set_dense_covariance(covariance[None])

    # -- post-hoc Laplace refinement ("+LA"; bayeshead.heads.laplace_refine) ----------------------
    def laplace_option_mean(self) -> tuple[Tensor, Tensor | None]:
        """w̄ (d,) and the position bias (max_options,) or None, where the GGN is evaluated."""
        return self.mean.detach(), None if self.position_bias is None else self.position_bias.detach()

    # -- pieces --------------------------------------------------------------------------------
    def root_projection(self, features: Tensor) -> Tensor:
        """P = H R with S = R Rᵀ, (N, m), so that H S Hᵀ = P Pᵀ without forming S:
        R = diag(σ) (diagonal, m = d), L (dense, m = d), [F, diag(√D)] (low rank, m = r + d)."""
        post = self.posterior
        scaled = features * post.scale_diag()[0]
        if post.kind == "diagonal":
            return scaled
        if post.kind == "dense":
            return features @ post.strict_lower()[0] + scaled
        return torch.cat([features @ post.factor[0], scaled], dim=-1)

    def _moments(self, features: Tensor, counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """μ (N,), v = diag(H S Hᵀ) + σ² (N,) and P (N, m), on validated inputs."""
        h = features.to(self.posterior.mean.dtype)
        mean = h @ self.mean
        offsets = self.offsets(counts)
        if offsets is not None:
            mean = mean + offsets
        proj = self.root_projection(h)
        return mean, proj.pow(2).sum(-1) + self.noise_var, proj

    def logit_moments(self, features: Tensor, counts: Tensor | list[int]) -> tuple[Tensor, Tensor]:
        """μ_k = h_kᵀw̄ + b_k and v_k = h_kᵀ S h_k + σ², both flat (N,)."""
        features, counts = self.check_inputs(features, counts)
        mean, var, _ = self._moments(features, counts)
        return mean, var

    def joint_covariance(self, features: Tensor, counts: Tensor | list[int]) -> list[Tensor]:
        """Σ_z = H_q S H_qᵀ + σ² I for every question q (an n_q × n_q matrix each)."""
        features, counts = self.check_inputs(features, counts)
        _, _, proj = self._moments(features, counts)
        eye = self.noise_var
        out = []
        for block in torch.split(proj, counts.tolist()):
            out.append(block @ block.T + eye * torch.eye(block.shape[0], dtype=block.dtype, device=block.device))
        return out

    def jensen_bound(self, features: Tensor, counts: Tensor | list[int], targets: Tensor) -> Tensor:
        """μ_y − log Σ_{k<n_q} exp(μ_k + ½ v_k) per question, (Q,)."""
        features, counts = self.check_inputs(features, counts)
        y = check_option_targets(targets, counts, self._name)
        mean, var, _ = self._moments(features, counts)
        starts = torch.cumsum(counts, 0) - counts
        return mean[starts + y] - segment_logsumexp(mean + 0.5 * var, counts)

    def kl(self) -> Tensor:
        """KL(q(w) ‖ N(0, s·I))."""
        return self.posterior.kl(self.prior_var)

    def sample_logits(
        self, features: Tensor, counts: Tensor | list[int], n_samples: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """S joint draws z_s ~ N(μ, H S Hᵀ + σ² I) per question, flat (S, N). Each question's
        covariance is factored (padded to K = max n_q with σ² on the unused diagonal, which
        leaves the used block's factor unchanged) in float64."""
        if n_samples <= 0:
            raise UserInputError(f"{self._name}: n_samples must be positive, got {n_samples}")
        features, counts = self.check_inputs(features, counts)
        mean, _, proj = self._moments(features, counts)
        padded = pad_segments(proj.transpose(0, 1), counts, fill=0.0).permute(1, 2, 0).double()  # (Q, K, m)
        k = padded.shape[1]
        eye = torch.eye(k, dtype=torch.float64, device=padded.device)
        cov = padded @ padded.transpose(-1, -2) + self.noise_var.double() * eye
        chol = psd_cholesky(cov)  # (Q, K, K)
        eps = torch.randn((n_samples, counts.numel(), k), generator=generator, dtype=torch.float64, device=mean.device)
        noise = torch.einsum("qij,sqj->sqi", chol, eps)
        return mean + unpad_segments(noise, counts).to(mean.dtype)

    # -- interface -----------------------------------------------------------------------------
    def loss_flat(self, features: Tensor, counts: Tensor | list[int], targets: Tensor) -> LossTerms:
        nll_bound = -self.jensen_bound(features, counts, targets).mean()
        return elbo_terms("nll_bound", nll_bound, self)

    def predict_flat(
        self,
        features: Tensor,
        counts: Tensor | list[int],
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
        method: Literal["probit", "mc"] | None = None,
    ) -> OptionPredictive:
        """The predictive of ``method`` (default ``config.predictive``); ``n_samples`` and
        ``generator`` matter for 'mc' only (S = n_samples or config.n_samples)."""
        method = method or self.config.predictive
        if method == "probit":
            mean, var = self.logit_moments(features, counts)
            counts_t = torch.as_tensor(counts, device=mean.device)
            return OptionPredictive.from_logits(mean / torch.sqrt(1.0 + (math.pi / 8.0) * var), counts_t)
        if method != "mc":
            raise UserInputError(f"{self._name}: method must be 'probit' or 'mc', got {method!r}")
        s = int(n_samples if n_samples is not None else self.config.n_samples)
        z = self.sample_logits(features, counts, s, generator)
        return OptionPredictive.from_sample_logits(z, torch.as_tensor(counts, device=z.device))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, prior_var={self.prior_var:.4g}, predictive={self.config.predictive!r}"

