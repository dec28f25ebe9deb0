"""Last-layer Laplace approximation (MacKay 1992; Daxberger et al. 2021, "Laplace Redux").

Training is the MAP softmax head (the loss of :mod:`bayeshead.heads.deterministic`: mean
cross-entropy + (λ/2)·‖W‖²). After training, :meth:`LaplaceHead.fit_posthoc` on cached
features fits a Gaussian over the last-layer parameters θ = (W, b) at the MAP θ*:

    q(θ) = N(θ*, P⁻¹),   P = H + δ·I,   H = Σ_n Λ_n ⊗ φ̃_n φ̃_nᵀ,   Λ_n = diag(p_n) − p_n p_nᵀ

(the softmax GGN, exact for a linear head; ``full``, ``kron`` or ``diag``, see
:mod:`bayeshead.heads.laplace_posterior`). As in laplace-torch the Gaussian prior N(0, δ⁻¹ I)
covers the weights and the bias. δ (one scalar, or one per class) is chosen by

* ``marglik``: maximising the Laplace log evidence

      log p(D | δ) ≈ Σ_n log p(y_n | f_n(θ*)) − ½ Σ_k δ_k θ*_k² + ½ Σ_k log δ_k − ½ log|P|

  with Adam on log δ (as laplace-torch's ``optimize_prior_precision(method="marglik")``,
  same defaults: 100 steps, learning rate 0.1, start 1.0);
* ``gridsearch``: the δ on a log10 grid with the lowest validation NLL of the predictive;
* ``none``: δ = ``prior_precision``.

Prediction is the GLM (linearised) predictive f ~ N(θ*ᵀφ̃, J Σ Jᵀ) pushed through the softmax
with the ``probit`` approximation or Monte Carlo (:mod:`bayeshead.heads.glm_predictive`).
Before :meth:`fit_posthoc`, :meth:`LaplaceHead.predict` refuses
(:class:`~bayeshead.errors.NotFittedError`), except inside
:meth:`~bayeshead.heads.base.UncertaintyHead.training_predictive`, where it is the MAP softmax
(the trainer's validation pass). A prior precision search that ends at a limit of its range
(the grid's ends; for ``marglik`` the farthest Adam can move in ``marglik_steps``) warns.
The curvature, δ and the Cholesky factor are buffers: a saved state_dict restores the fitted
posterior.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator
from torch import Tensor, nn

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_class_targets, check_features
from bayeshead.heads.deterministic import map_softmax_loss
from bayeshead.heads.glm_predictive import mc_predictive, probit_predictive
from bayeshead.heads.laplace_posterior import LaplacePosterior, make_posterior
from bayeshead.posthoc_bounds import bound_side, warn_at_bound
from bayeshead.registry import HEADS
from bayeshead.search_space import LogUniform, SearchSpace
from bayeshead.types import CategoricalPredictive, LossTerms

__all__ = ["LaplaceHead", "LaplaceHeadConfig"]

_NAME = "laplace head"
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class LaplaceHeadConfig(HeadConfig):
    kind: Literal["laplace"] = "laplace"
    search_space: ClassVar[SearchSpace] = {
        "head.weight_decay": LogUniform(low=1e-6, high=1e-1),
        # only where no marginal-likelihood or grid search sets δ
        "head.prior_precision": LogUniform(low=1e-3, high=1e3, when={"head.prior_optimization": "none"}),
    }
    weight_decay: NonNegativeFloat = Field(0.0, description="λ of the MAP loss (λ/2)·‖W‖², as the deterministic head.")
    bias: bool = True
    hessian_structure: Literal["full", "kron", "diag"] = "kron"
    prior_precision: PositiveFloat = Field(1.0, description="δ, or the starting δ of the marglik optimisation.")
    prior_structure: Literal["scalar", "per_class"] = "scalar"
    prior_optimization: Literal["marglik", "gridsearch", "none"] = "marglik"
    marglik_steps: PositiveInt = 100
    marglik_lr: PositiveFloat = 0.1
    grid_log10_min: float = -4.0
    grid_log10_max: float = 4.0
    grid_size: PositiveInt = 100
    link_approx: Literal["probit", "mc"] = "probit"
    n_samples: PositiveInt = Field(100, description="Monte Carlo samples of the 'mc' link when predict gets none.")
    dtype: Literal["float64", "float32"] = "float64"

    @model_validator(mode="after")
    def _check(self) -> LaplaceHeadConfig:
        if self.hessian_structure == "kron" and self.prior_structure == "per_class":
            raise UserInputError(
                "prior_structure='per_class' needs hessian_structure 'full' or 'diag'; the Kronecker "
                "eigenbasis only admits one scalar prior precision (got hessian_structure='kron')"
            )
        if self.grid_log10_min >= self.grid_log10_max:
            raise UserInputError(
                f"grid_log10_min must be below grid_log10_max, got {self.grid_log10_min} and {self.grid_log10_max}"
            )
        return self


@HEADS.register("laplace", config=LaplaceHeadConfig)
class LaplaceHead(UncertaintyHead):
    """Last-layer Laplace: MAP softmax head + post-hoc Gaussian posterior (full/kron/diag GGN)."""

    Config = LaplaceHeadConfig
    config: LaplaceHeadConfig
    posthoc_data = "train"

    def __init__(self, in_features: int, num_outputs: int, config: LaplaceHeadConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        cfg = self.config
        self.dtype = _DTYPES[cfg.dtype]
        self.linear = nn.Linear(in_features, num_outputs, bias=cfg.bias)
        self.posterior: LaplacePosterior = make_posterior(
            cfg.hessian_structure, num_outputs, in_features, cfg.bias, self.dtype
        )
        n_prior = num_outputs if cfg.prior_structure == "per_class" else 1
        self.register_buffer("prior_precision", torch.full((n_prior,), cfg.prior_precision, dtype=self.dtype))
        self.register_buffer("map_nll", torch.zeros((), dtype=self.dtype))  # Σ_n −log p(y_n | θ*)
        self.register_buffer("n_data", torch.zeros((), dtype=torch.int64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # -- MAP part ----------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def logits(self, features: Tensor) -> Tensor:
        features = check_features(features, self.in_features, _NAME)
        return self.linear(features.to(self.linear.weight.dtype))

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """The MAP objective: mean cross-entropy + (λ/2)·‖W‖² (bias not penalised)."""
        logits = self.logits(features)
        return map_softmax_loss(logits, targets, self.linear.weight, self.config.weight_decay, _NAME)

    def mean_parameters(self) -> Tensor:
        """θ* class by class: [W | b] of shape (C, D), in the posterior dtype."""
        w = self.linear.weight.detach().to(self.dtype)
        if self.linear.bias is None:
            return w
        return torch.cat([w, self.linear.bias.detach().to(self.dtype).unsqueeze(1)], dim=1)

    # -- post-hoc fit --------------------------------------------------------------------------
    @torch.no_grad()
    def fit_posthoc(
        self,
        features: Tensor,
        targets: Tensor,
        *,
        val_features: Tensor | None = None,
        val_targets: Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Fit the posterior at the current (MAP) weights on the training ``features`` (N, d) and
        ``targets`` (N,), then choose δ by ``config.prior_optimization`` (``gridsearch`` needs
        ``val_features`` and ``val_targets``). Returns the mean chosen prior precision."""
        if kwargs:
            raise InputTypeError(f"{_NAME}: unexpected fit_posthoc arguments {sorted(kwargs)}; it takes val_features, val_targets")
        features = check_features(features, self.in_features, _NAME).to(self.dtype)
        targets = check_class_targets(targets, features.shape[0], self.num_outputs, _NAME).to(features.device)
        if features.shape[0] == 0:
            raise UserInputError(f"{_NAME}: fit_posthoc needs at least one training example, got none")
        logits = self._mean_logits(features)
        self.map_nll.copy_(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        self.n_data.fill_(features.shape[0])
        self.posterior.fit(features, torch.softmax(logits, dim=-1))
        self.fitted.fill_(True)
        method = self.config.prior_optimization
        if method == "none":
            self.set_prior_precision(torch.full_like(self.prior_precision, self.config.prior_precision))
        else:
            self.optimize_prior_precision(method, val_features=val_features, val_targets=val_targets)
        return {"prior_precision_mean": float(self.prior_precision.float().mean())}

    def _require_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{_NAME}: {what} needs the posterior; call fit_posthoc(features, targets) first")

    def _mean_logits(self, features: Tensor) -> Tensor:
        phi = features.to(self.dtype)
        w = self.linear.weight.detach().to(self.dtype)
        out = phi @ w.transpose(0, 1)
        if self.linear.bias is not None:
            out = out + self.linear.bias.detach().to(self.dtype)
        return out

    def _as_prior(self, prior_precision: Tensor | float) -> Tensor:
        delta = torch.as_tensor(prior_precision, dtype=self.dtype, device=self.prior_precision.device)
        if delta.dim() == 0:
            delta = delta.reshape(1).expand_as(self.prior_precision)
        if delta.shape != self.prior_precision.shape:
            raise UserInputError(
                f"{_NAME}: prior precision of shape {tuple(self.prior_precision.shape)} expected "
                f"(prior_structure={self.config.prior_structure!r}), got {tuple(delta.shape)}"
            )
        if not bool((delta > 0).all()):
            raise UserInputError(f"{_NAME}: prior precision must be positive, got {delta.detach().tolist()}")
        return delta

    @torch.no_grad()
    def set_prior_precision(self, prior_precision: Tensor | float) -> None:
        """Set δ (a scalar, or one value per class) and refactorise the posterior."""
        self._require_fitted("set_prior_precision")
        self.prior_precision.copy_(self._as_prior(prior_precision))
        self.posterior.refresh(self.prior_precision)

    def log_marginal_likelihood(self, prior_precision: Tensor | None = None) -> Tensor:
        """log p(D|δ) ≈ −Σ_n CE_n(θ*) − ½·(log|P| − Σ_k log δ_k + Σ_k δ_k θ*_k²); differentiable in δ."""
        self._require_fitted("log_marginal_likelihood")
        delta = self.prior_precision if prior_precision is None else prior_precision.to(self.dtype)
        per_param = self.posterior.expand_prior(delta)
        theta = self.mean_parameters()
        log_det_ratio = self.posterior.logdet(delta) - per_param.log().sum()
        scatter = (per_param * theta.pow(2)).sum()
        return -self.map_nll - 0.5 * (log_det_ratio + scatter)

    def optimize_prior_precision(
        self,
        method: Literal["marglik", "gridsearch"] = "marglik",
        *,
        val_features: Tensor | None = None,
        val_targets: Tensor | None = None,
    ) -> Tensor:
        """Choose δ by marginal likelihood (Adam on log δ) or by validation-NLL grid search;
        sets and returns it."""
        self._require_fitted("optimize_prior_precision")
        if method == "marglik":
            delta = self._marglik(self._as_prior(self.config.prior_precision))
        elif method == "gridsearch":
            if val_features is None or val_targets is None:
                raise UserInputError(
                    f"{_NAME}: prior_optimization='gridsearch' needs validation data; pass "
                    "fit_posthoc(..., val_features=..., val_targets=...) or use 'marglik'"
                )
            delta = self._gridsearch(val_features, val_targets)
        else:
            raise UserInputError(f"{_NAME}: method must be 'marglik' or 'gridsearch', got {method!r}")
        self.set_prior_precision(delta)
        return self.prior_precision.clone()

    def _marglik(self, init: Tensor) -> Tensor:
        cfg = self.config
        start = init.detach().clone().log()
        log_delta = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([log_delta], lr=cfg.marglik_lr)
        with torch.enable_grad():
            for _ in range(cfg.marglik_steps):
                optimizer.zero_grad()
                loss = -self.log_marginal_likelihood(log_delta.exp())
                loss.backward()
                optimizer.step()
        # Adam moves log δ by about marglik_lr per step at most: the search reaches start ± steps·lr
        reach = cfg.marglik_steps * cfg.marglik_lr
        travel = (log_delta.detach() - start).abs().max()
        if float(travel) >= 0.9 * reach:
            worst = int((log_delta.detach() - start).abs().argmax())
            value, base = float(log_delta.detach()[worst]), float(start[worst])
            side = "lower" if value < base else "upper"
            warn_at_bound(
                f"{_NAME}: prior precision (marglik, log δ)", value, base - reach, base + reach, side,
                f"Adam moved log δ {float(travel):.3g} of the {reach:.3g} its {cfg.marglik_steps} steps of "
                f"{cfg.marglik_lr:g} can reach from prior_precision={cfg.prior_precision:g}; raise marglik_steps or "
                "marglik_lr, start from another prior_precision, or use prior_optimization='gridsearch'",
            )
        return log_delta.detach().exp()

    @torch.no_grad()
    def _gridsearch(self, val_features: Tensor, val_targets: Tensor) -> Tensor:
        cfg = self.config
        val_features = check_features(val_features, self.in_features, _NAME)
        val_targets = check_class_targets(val_targets, val_features.shape[0], self.num_outputs, _NAME)
        grid = torch.logspace(cfg.grid_log10_min, cfg.grid_log10_max, cfg.grid_size, dtype=self.dtype)
        best, best_nll = grid[0], math.inf
        for value in grid:
            try:
                self.set_prior_precision(value)
            except ValueError:  # P not positive definite at this δ
                continue
            generator = torch.Generator(device=val_features.device).manual_seed(0)
            nll = float(self.predict(val_features, generator=generator).nll(val_targets).mean())
            if nll < best_nll:
                best, best_nll = value, nll
        if cfg.grid_size > 1:
            log10 = math.log10(float(best))
            side = bound_side(log10, cfg.grid_log10_min, cfg.grid_log10_max, rtol=1e-9)
            if side is not None:
                warn_at_bound(
                    f"{_NAME}: prior precision (gridsearch, log10 δ)", log10, cfg.grid_log10_min,
                    cfg.grid_log10_max, side, "widen grid_log10_min/grid_log10_max past it",
                )
        return best.reshape(1).expand_as(self.prior_precision).clone()

    # -- prediction ------------------------------------------------------------------------------
    def logit_moments(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """GLM logit mean θ*ᵀφ̃ (B, C) and covariance J Σ Jᵀ ((B, C, C), or (B, C) for 'diag')."""
        self._require_fitted("logit_moments")
        features = check_features(features, self.in_features, _NAME).to(self.dtype)
        return self._mean_logits(features), self.posterior.logit_covariance(features, self.prior_precision)

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
        link_approx: Literal["probit", "mc"] | None = None,
    ) -> CategoricalPredictive:
        """The GLM predictive with ``link_approx`` (default ``config.link_approx``).
        ``n_samples``/``generator`` matter for 'mc' only. Before :meth:`fit_posthoc` it raises
        :class:`~bayeshead.errors.NotFittedError`, except inside :meth:`training_predictive`,
        where it is the MAP softmax."""
        if not self.is_fitted:
            self.refuse_unfitted("the Laplace posterior", "head.fit_posthoc(train_features, train_labels)")
            return CategoricalPredictive.from_logits(self.logits(features))
        link = link_approx or self.config.link_approx
        mean, cov = self.logit_moments(features)
        if link == "probit":
            return probit_predictive(mean, cov)
        if link == "mc":
            return mc_predictive(mean, cov, int(n_samples or self.config.n_samples), generator)
        raise UserInputError(f"{_NAME}: link_approx must be 'probit' or 'mc', got {link!r}")

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"{super().extra_repr()}, hessian_structure={cfg.hessian_structure!r}, "
            f"prior_structure={cfg.prior_structure!r}, fitted={self.is_fitted}"
        )
