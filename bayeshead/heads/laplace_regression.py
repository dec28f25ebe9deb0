"""Last-layer Laplace approximation for regression (MacKay 1992, "Bayesian Interpolation" and
"A Practical Bayesian Framework for Backpropagation Networks"; Daxberger et al. 2021,
"Laplace Redux").

Model: y_j = θ_jᵀφ̃ + ε_j, ε_j ~ N(0, σ²), j = 1..k, with φ̃ = [φ, 1] when the head has a bias
(D = d + 1, else D = d) and the prior θ ~ N(0, δ⁻¹ I) on every weight and bias (as
laplace-torch). Training is MAP: the mean Gaussian NLL with a learned noise σ plus (λ/2)·‖W‖².

After training, :meth:`LaplaceRegressionHead.fit_posthoc` on the training features Φ (N, D)
fits a Gaussian over θ at the MAP θ*. The likelihood is Gaussian and the head linear, so the
GGN is the exact Hessian, the same for every output:

    H = ΦᵀΦ / σ²,    P = H + δ·I,    Σ = P⁻¹   (per output; the k blocks are independent).

Closed-form predictive (the GLM predictive is exact here):

    p(y_j | φ) = N(θ*_jᵀφ̃,  φ̃ᵀΣφ̃ + σ²).

Laplace log evidence at θ* (with RSS = Σ_n Σ_j (y_nj − θ*_jᵀφ̃_n)², μ_i the eigenvalues of ΦᵀΦ):

    log Z(δ, σ) = −RSS/(2σ²) − N·k·log(σ√(2π)) − ½δ‖θ*‖² − ½·k·Σ_i log(1 + μ_i/(σ²δ)).

Its stationarity conditions in δ and σ are MacKay's evidence updates, with the effective number
of parameters γ = k·Σ_i μ_i/(μ_i + σ²δ):

    δ = γ / ‖θ*‖²,        σ² = RSS / (N·k − γ),

iterated to a fixed point (each step is closed form on the eigenvalues, computed once). δ and σ
are kept within [``min_value``, ``max_value``] with a warning when a bound is hit. The Gram
matrix, its eigenvalues, δ, σ and the Cholesky factor of P are float64 buffers: a saved
state_dict restores the fitted posterior. Before :meth:`fit_posthoc` the head refuses to predict,
except inside :meth:`~bayeshead.heads.base.UncertaintyHead.training_predictive` (validation during
training), where it predicts the MAP network's N(θ*ᵀφ̃, σ_train²).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator
from torch import Tensor, nn

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_features
from bayeshead.heads.gaussian import gaussian_nll
from bayeshead.heads.vbll_common import check_regression_targets
from bayeshead.registry import HEADS
from bayeshead.types import GaussianPredictive, LossTerms

__all__ = ["LaplaceRegressionHead", "LaplaceRegressionConfig", "laplace_log_evidence", "evidence_fixed_point"]

_NAME = "laplace_regression head"


class LaplaceRegressionConfig(HeadConfig):
    kind: Literal["laplace_regression"] = "laplace_regression"
    weight_decay: NonNegativeFloat = Field(0.0, description="λ of the MAP loss (λ/2)·‖W‖² (the bias is not penalised).")
    bias: bool = True
    noise_init: PositiveFloat = Field(1.0, description="Initial noise standard deviation σ of the MAP training.")
    learn_noise: bool = Field(True, description="Learn σ with the MAP weights (else it stays at noise_init during training).")
    prior_precision: PositiveFloat = Field(1.0, description="δ, or the starting δ of the evidence maximisation.")
    marglik: Literal["prior_and_noise", "prior", "none"] = Field(
        "prior_and_noise",
        description="What fit_posthoc chooses by maximising the Laplace evidence: δ and σ, δ alone (σ from "
        "training), or nothing (δ = prior_precision, σ from training).",
    )
    max_iter: PositiveInt = Field(1000, description="Fixed-point iterations of the evidence updates.")
    tol: PositiveFloat = Field(1e-10, description="Relative change of δ and σ² at which the iterations stop.")
    min_value: PositiveFloat = Field(1e-8, description="Lower bound of δ and σ².")
    max_value: PositiveFloat = Field(1e8, description="Upper bound of δ and σ².")

    @model_validator(mode="after")
    def _check(self) -> LaplaceRegressionConfig:
        if self.min_value >= self.max_value:
            raise UserInputError(f"min_value must be below max_value, got {self.min_value} and {self.max_value}")
        return self


def laplace_log_evidence(
    eigvals: Tensor, rss: Tensor | float, theta_sq: Tensor | float, n_data: int, n_outputs: int,
    prior_precision: Tensor | float, noise_var: Tensor | float,
) -> Tensor:
    """log Z(δ, σ) = −RSS/(2σ²) − N k log(σ√2π) − ½δ‖θ*‖² − ½ k Σ_i log(1 + μ_i/(σ²δ)) (float64,
    differentiable in δ and σ²)."""
    delta = torch.as_tensor(prior_precision, dtype=torch.float64)
    var = torch.as_tensor(noise_var, dtype=torch.float64)
    rss = torch.as_tensor(rss, dtype=torch.float64)
    theta_sq = torch.as_tensor(theta_sq, dtype=torch.float64)
    log_lik = -0.5 * rss / var - n_data * n_outputs * 0.5 * (var.log() + math.log(2 * math.pi))
    log_det_ratio = n_outputs * torch.log1p(eigvals.double() / (var * delta)).sum()
    return log_lik - 0.5 * delta * theta_sq - 0.5 * log_det_ratio


def evidence_fixed_point(
    eigvals: Tensor, rss: float, theta_sq: float, n_data: int, n_outputs: int, delta: float, noise_var: float,
    *, fit_prior: bool = True, fit_noise: bool = True, max_iter: int = 1000, tol: float = 1e-10,
    bounds: tuple[float, float] = (1e-8, 1e8),
) -> tuple[float, float, int, list[str]]:
    """MacKay's updates δ = γ/‖θ*‖², σ² = RSS/(N k − γ), γ = k Σ_i μ_i/(μ_i + σ²δ), to a fixed
    point. Returns (δ, σ², iterations, names of the quantities that hit a bound)."""
    mu = eigvals.double().clamp_min(0.0)
    low, high = bounds
    clipped: set[str] = set()

    def bound(name: str, value: float) -> float:
        if not math.isfinite(value) or value > high:
            clipped.add(name)
            return high
        if value < low:
            clipped.add(name)
            return low
        return value

    iterations = 0
    while iterations < max_iter:
        iterations += 1
        gamma = n_outputs * float((mu / (mu + noise_var * delta)).sum())
        new_delta = bound("prior_precision", gamma / theta_sq if theta_sq > 0 else math.inf) if fit_prior else delta
        dof = n_data * n_outputs - gamma
        new_var = bound("noise_var", rss / dof if dof > 0 else math.inf) if fit_noise else noise_var
        change = max(abs(new_delta - delta) / delta, abs(new_var - noise_var) / noise_var)
        delta, noise_var = new_delta, new_var
        if change < tol:
            break
    return delta, noise_var, iterations, sorted(clipped)


@HEADS.register("laplace_regression", config=LaplaceRegressionConfig)
class LaplaceRegressionHead(UncertaintyHead):
    """Last-layer Laplace for regression: MAP linear head + exact-Hessian Gaussian posterior,
    closed-form predictive, δ and σ by the Laplace evidence."""

    Config = LaplaceRegressionConfig
    config: LaplaceRegressionConfig
    task_type = "regression"
    posthoc_data = "train"

    def __init__(self, in_features: int, num_outputs: int, config: LaplaceRegressionConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        cfg = self.config
        self.linear = nn.Linear(in_features, num_outputs, bias=cfg.bias)
        log_noise = torch.tensor(math.log(cfg.noise_init))
        if cfg.learn_noise:
            self.log_noise = nn.Parameter(log_noise)
        else:
            self.register_buffer("log_noise", log_noise)
        dim = in_features + int(cfg.bias)
        f64 = torch.float64
        self.register_buffer("gram", torch.zeros(dim, dim, dtype=f64))
        self.register_buffer("gram_eigvals", torch.zeros(dim, dtype=f64))
        self.register_buffer("precision_chol", torch.eye(dim, dtype=f64))
        self.register_buffer("prior_precision", torch.tensor(float(cfg.prior_precision), dtype=f64))
        self.register_buffer("noise_std", torch.tensor(float(cfg.noise_init), dtype=f64))
        self.register_buffer("rss", torch.tensor(0.0, dtype=f64))
        self.register_buffer("n_data", torch.tensor(0, dtype=torch.long))
        self.register_buffer("fitted", torch.tensor(False))

    # -- pieces ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """D: the width of φ̃ (d, plus 1 with a bias)."""
        return self.in_features + int(self.config.bias)

    def _features(self, features: Tensor) -> Tensor:
        return check_features(features, self.in_features, _NAME)

    def _augmented(self, features: Tensor) -> Tensor:
        """φ̃ = [φ, 1] (or φ without a bias), float64."""
        phi = features.double()
        if self.config.bias:
            phi = torch.cat([phi, torch.ones(phi.shape[0], 1, dtype=phi.dtype, device=phi.device)], dim=1)
        return phi

    def theta(self) -> Tensor:
        """θ* as (k, D) float64: [W, b]."""
        weight = self.linear.weight.detach().double()
        if self.linear.bias is not None:
            weight = torch.cat([weight, self.linear.bias.detach().double().unsqueeze(1)], dim=1)
        return weight

    def mean(self, features: Tensor) -> Tensor:
        """θ*ᵀφ̃ (B, k), in the weights' dtype."""
        features = self._features(features)
        return self.linear(features.to(self.linear.weight.dtype))

    def functional_variance(self, features: Tensor) -> Tensor:
        """φ̃ᵀΣφ̃ (B,) float64 (zero before fit_posthoc): the epistemic part of the variance."""
        features = self._features(features)
        if not bool(self.fitted):
            return torch.zeros(features.shape[0], dtype=torch.float64, device=features.device)
        phi = self._augmented(features).to(self.precision_chol.device)
        solved = torch.linalg.solve_triangular(self.precision_chol, phi.T, upper=False)
        return solved.pow(2).sum(0)

    def noise_var(self) -> Tensor:
        """σ² (float64): the post-hoc σ once fitted, else the training σ."""
        if bool(self.fitted):
            return self.noise_std.pow(2)
        if not self.config.learn_noise:
            return torch.tensor(self.config.noise_init**2, dtype=torch.float64)
        return (2.0 * self.log_noise.detach()).exp().double()

    def log_marginal_likelihood(self, prior_precision: Any = None, noise_std: Any = None) -> Tensor:
        """The Laplace log evidence log Z(δ, σ) at θ* (defaults: the fitted δ and σ)."""
        if not bool(self.fitted):
            raise RuntimeError(f"{_NAME}: call fit_posthoc(train_features, train_targets) before log_marginal_likelihood")
        delta = self.prior_precision if prior_precision is None else prior_precision
        sigma = self.noise_std if noise_std is None else torch.as_tensor(noise_std, dtype=torch.float64)
        return laplace_log_evidence(
            self.gram_eigvals, self.rss, self.theta().pow(2).sum(), int(self.n_data), self.num_outputs,
            delta, sigma**2,
        )

    # -- interface ---------------------------------------------------------------------------
    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """MAP objective: mean Gaussian NLL with noise σ = exp(log_noise) + (λ/2)·‖W‖²."""
        mean = self.mean(features)
        y = check_regression_targets(targets, mean.shape[0], self.num_outputs, _NAME).to(mean)
        var = (2.0 * self.log_noise).exp().to(mean.dtype).expand_as(mean)
        nll = gaussian_nll(mean, var, y).mean()
        parts = {"nll": nll}
        total = nll
        if self.config.weight_decay > 0:
            parts["weight_decay"] = 0.5 * self.config.weight_decay * self.linear.weight.pow(2).sum()
            total = total + parts["weight_decay"]
        return LossTerms(total=total, parts=parts)

    @torch.no_grad()
    def fit_posthoc(self, features: Tensor, targets: Tensor, **kwargs: Any) -> dict[str, float]:
        """Fit the posterior on the training ``features`` (N, d) and ``targets`` (N,) or (N, k);
        returns ``{"prior_precision": δ, "noise_std": σ, "log_marglik": log Z, "iterations": n}``."""
        if kwargs:
            raise InputTypeError(f"{_NAME}: unexpected fit_posthoc arguments {sorted(kwargs)}")
        features = self._features(features)
        n = features.shape[0]
        if n == 0:
            raise UserInputError(f"{_NAME}: fit_posthoc needs at least one training example, got none")
        y = check_regression_targets(targets, n, self.num_outputs, _NAME).double().to(features.device)
        phi = self._augmented(features)
        theta = self.theta().to(phi.device)
        gram = phi.T @ phi
        rss = float((y - phi @ theta.T).pow(2).sum())
        eigvals = torch.linalg.eigvalsh(gram).clamp_min(0.0)
        cfg = self.config
        delta = float(cfg.prior_precision)
        noise_var = float((2.0 * self.log_noise.detach()).exp()) if cfg.learn_noise else cfg.noise_init**2
        iterations = 0
        if cfg.marglik != "none":
            delta, noise_var, iterations, clipped = evidence_fixed_point(
                eigvals, rss, float(theta.pow(2).sum()), n, self.num_outputs, delta, noise_var,
                fit_prior=True, fit_noise=cfg.marglik == "prior_and_noise",
                max_iter=cfg.max_iter, tol=cfg.tol, bounds=(cfg.min_value, cfg.max_value),
            )
            if clipped:
                warnings.warn(
                    f"{_NAME}: the evidence maximisation hit a bound for {clipped} (kept within "
                    f"[{cfg.min_value:g}, {cfg.max_value:g}]): the MAP weights are ~0 or the fit is exact; check the "
                    "features and targets, or set marglik='none' with a chosen prior_precision",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if iterations == cfg.max_iter:
                warnings.warn(
                    f"{_NAME}: the evidence updates did not converge in {cfg.max_iter} iterations "
                    f"(δ = {delta:.4g}, σ² = {noise_var:.4g}); raise max_iter",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self._store(gram, eigvals, rss, n, delta, noise_var)
        return {
            "prior_precision": delta,
            "noise_std": math.sqrt(noise_var),
            "log_marglik": float(self.log_marginal_likelihood()),
            "iterations": float(iterations),
        }

    def _store(self, gram: Tensor, eigvals: Tensor, rss: float, n: int, delta: float, noise_var: float) -> None:
        precision = gram / noise_var + delta * torch.eye(self.dim, dtype=torch.float64, device=gram.device)
        self.gram.copy_(gram)
        self.gram_eigvals.copy_(eigvals)
        self.precision_chol.copy_(torch.linalg.cholesky(precision))
        self.prior_precision.fill_(delta)
        self.noise_std.fill_(math.sqrt(noise_var))
        self.rss.fill_(rss)
        self.n_data.fill_(n)
        self.fitted.fill_(True)

    @torch.no_grad()
    def set_hyperparameters(self, prior_precision: float, noise_std: float) -> None:
        """Refit P = ΦᵀΦ/σ² + δI for given δ and σ (after fit_posthoc, keeping Φ)."""
        if not bool(self.fitted):
            raise RuntimeError(f"{_NAME}: call fit_posthoc before set_hyperparameters")
        if prior_precision <= 0 or noise_std <= 0:
            raise UserInputError(f"{_NAME}: prior_precision and noise_std must be > 0, got {prior_precision} and {noise_std}")
        self._store(self.gram, self.gram_eigvals, float(self.rss), int(self.n_data), prior_precision, noise_std**2)

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> GaussianPredictive:
        """N(θ*ᵀφ̃, φ̃ᵀΣφ̃ + σ²) per output (closed form; ``n_samples``/``generator`` ignored), with
        φ̃ᵀΣφ̃ as the epistemic part. Before :meth:`fit_posthoc` it raises
        :class:`~bayeshead.errors.NotFittedError`, except inside :meth:`training_predictive`, where
        it is the MAP network's N(θ*ᵀφ̃, σ_train²)."""
        if not bool(self.fitted):
            self.refuse_unfitted("the Laplace posterior", "head.fit_posthoc(train_features, train_targets)")
        mean = self.mean(features)
        functional = self.functional_variance(features)
        var = (functional + self.noise_var()).to(mean.dtype)
        epistemic = functional.to(mean.dtype).unsqueeze(1).expand_as(mean).contiguous()
        return GaussianPredictive(mean=mean, var=var.unsqueeze(1).expand_as(mean).contiguous(), epistemic_var=epistemic)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, fitted={bool(self.fitted)}, prior_precision={float(self.prior_precision):.4g}, "
            f"noise_std={float(self.noise_std):.4g}"
        )
