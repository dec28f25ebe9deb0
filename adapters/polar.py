"""PoLAR (Lion, Zhang, Li, He 2025): h = W0·x + (α/r)·U·(Θ·(Vᵀ·x)).

U ∈ St(m, r) and V ∈ St(n, r) are ``geoopt.ManifoldParameter``s on ``geoopt.EuclideanStiefel``
(train them with the ``"riemannian_adam"`` or ``"landing"`` optimizer), initialised as Q of the
QR factorisation of a Gaussian with diag(R) > 0; Θ ∈ R^{r×r} is Euclidean and starts at 0, so
ΔW = (α/r)·U·Θ·Vᵀ = 0 at init. The forward pass never forms ΔW (cost O((m + n)·r) per token).
Θ may train at ``theta_lr_ratio`` times the optimizer's learning rate (:meth:`parameter_lr_scale`).
Requires r ≤ min(m, n). Factors are fp32 when the base layer is bf16/fp16.
"""

from __future__ import annotations

import geoopt
import torch
from torch import Tensor, nn

from bayeshead.adapters._lowrank import LowRankAdapter
from bayeshead.adapters.config import PoLARConfig
from bayeshead.manifolds.geometry import Geometry
from bayeshead.manifolds.stable_rank import stable_rank_orthonormal
from bayeshead.manifolds.stiefel import orthogonality_error, random_stiefel
from bayeshead.registry import ADAPTERS

__all__ = ["PoLARLinear"]


@ADAPTERS.register("polar", config=PoLARConfig)
class PoLARLinear(LowRankAdapter):
    """PoLAR around an ``nn.Linear`` or ``Conv1D``: ΔW = (α/r)·U·Θ·Vᵀ, U, V on Stiefel."""

    def __init__(self, base_layer: nn.Module, config: PoLARConfig | None = None) -> None:
        config = config or PoLARConfig()
        super().__init__(base_layer, config)
        kw = self._factor_kwargs
        manifold = geoopt.EuclideanStiefel()
        self.U = geoopt.ManifoldParameter(random_stiefel(self.out_features, self.rank, **kw), manifold=manifold)
        self.V = geoopt.ManifoldParameter(random_stiefel(self.in_features, self.rank, **kw), manifold=manifold)
        self.theta = nn.Parameter(torch.zeros(self.rank, self.rank, **kw))
        self.theta_lr_ratio = float(config.theta_lr_ratio)

    def _delta_path(self, x: Tensor) -> Tensor:
        return ((x @ self.V) @ self.theta.T) @ self.U.T

    def _delta(self) -> Tensor:
        return self.U @ self.theta @ self.V.T

    def stable_rank(self) -> float:
        """sr(ΔW) = sr(Θ), exact when U and V are orthonormal."""
        return stable_rank_orthonormal(self.theta)

    def orthogonality_error(self) -> dict[str, float]:
        """``{"U": ‖UᵀU − I‖_F, "V": ‖VᵀV − I‖_F}``."""
        with torch.no_grad():
            return {"U": float(orthogonality_error(self.U)), "V": float(orthogonality_error(self.V))}

    def parameter_geometry(self) -> dict[str, Geometry]:
        return {"U": "stiefel", "V": "stiefel", "theta": "euclidean"}

    def parameter_lr_scale(self) -> dict[str, float]:
        """Θ at ``theta_lr_ratio`` times the optimizer's lr (U and V unscaled)."""
        return {} if self.theta_lr_ratio == 1.0 else {"theta": self.theta_lr_ratio}
