"""The base of the VBLL heads whose posterior rows are the rows of a linear layer
(regression and discriminative classification; Harrison, Willes & Snoek, ICLR 2024).

It holds q(w_r) = N(w̄_r, S_r) for r = 1..R (:class:`~bayeshead.heads.covariance.GaussianRows`)
under the prior N(0, s·I), a learned noise σ_r (log-parameterised), an optional point-estimated
bias, the KL Σ_r KL(q(w_r) ‖ N(0, s·I)), and initialisation from a trained linear layer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from bayeshead.errors import UserInputError
from bayeshead.heads.base import UncertaintyHead, check_features
from bayeshead.heads.covariance import GaussianRows
from bayeshead.heads.vbll_common import default_init_std, linear_rows, linear_shape, prior_variance

__all__ = ["VBLLRowsHead"]


class VBLLRowsHead(UncertaintyHead):
    """Gaussian rows w_r with prior N(0, s·I), noise σ_r and optional bias b_r."""

    def __init__(self, in_features: int, num_outputs: int, config: Any = None) -> None:
        super().__init__(in_features, num_outputs, config)
        cfg = self.config
        self.prior_var = prior_variance(cfg.prior_scale, cfg.prior_width_scaling, in_features)
        self.posterior = GaussianRows(
            num_outputs,
            in_features,
            cfg.covariance,
            rank=cfg.lowrank_rank if cfg.covariance == "lowrank" else None,
            init_std=default_init_std(cfg.init_std, in_features),
            mean_std=math.sqrt(self.prior_var) if cfg.mean_init_std is None else float(cfg.mean_init_std),
            shared=self.shares_covariance(),
        )
        self.noise_log_std = nn.Parameter(
            torch.full((num_outputs,), math.log(cfg.noise_init)), requires_grad=cfg.learn_noise
        )
        self.bias = nn.Parameter(torch.zeros(num_outputs)) if cfg.bias else None

    def shares_covariance(self) -> bool:
        """Whether all rows share one covariance S (a head whose config offers it overrides this)."""
        return False

    @property
    def _name(self) -> str:
        return f"{self.config.kind} head"

    def mean_and_quadratic(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """w̄_rᵀφ + b_r and φᵀS_rφ, both (B, R), after validating the features."""
        phi = check_features(features, self.in_features, self._name).to(self.posterior.mean.dtype)
        mean = phi @ self.posterior.mean.transpose(0, 1)
        if self.bias is not None:
            mean = mean + self.bias
        return mean, self.posterior.quadratic(phi)

    def kl(self) -> Tensor:
        """Σ_r KL(q(w_r) ‖ N(0, s·I))."""
        return self.posterior.kl(self.prior_var)

    @torch.no_grad()
    def init_from_linear(self, weight: Any, bias: Tensor | None = None) -> Any:
        """Set the posterior means to trained rows ``weight`` (a (rows, d) tensor such as LM-head
        rows, an ``nn.Linear`` or a ``DeterministicHead``) and the bias, if any; covariances unchanged."""
        w, b = linear_rows(weight, bias, self.num_outputs, self.in_features, self._name)
        self.posterior.set_mean(w)
        if b is not None:
            if self.bias is None:
                raise UserInputError(f"{self._name}: got a bias but the head has none; set bias=True in its config")
            self.bias.copy_(b.to(self.bias.dtype))
        return self

    @classmethod
    def from_linear(cls, weight: Any, bias: Tensor | None = None, config: Any = None) -> Any:
        """A new head whose means are ``weight``'s rows; the config's ``bias`` follows the source."""
        cfg = config or cls.Config()
        w, b = linear_rows(weight, bias, *linear_shape(weight), f"{cfg.kind} head")
        cfg = cfg.model_copy(update={"bias": b is not None})
        return cls(w.shape[1], w.shape[0], cfg).init_from_linear(w, b)
