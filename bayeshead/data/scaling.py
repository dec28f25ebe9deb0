""":class:`TargetScaler`: standardise regression targets on the training split and map
predictions back.

With per-output training mean m_j and standard deviation s_j (population, ddof = 0),

    z_j = (y_j − m_j) / s_j,        y_j = m_j + s_j·z_j.

A Gaussian predictive N(μ_z, v_z) on the standardised scale maps back to
N(m + s·μ_z, s²·v_z): the mean is shifted and scaled, the variance scaled by s². Densities pick
up the Jacobian: −log p(y) = −log p(z) + Σ_j log s_j.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.types import GaussianPredictive

__all__ = ["TargetScaler"]


def _as_matrix(targets: Tensor, what: str) -> Tensor:
    if not isinstance(targets, Tensor):
        raise InputTypeError(f"{what} must be a torch.Tensor of shape (N,) or (N, k), got {type(targets).__name__}")
    if not targets.is_floating_point():
        raise InputTypeError(
            f"{what} must be floating point (regression targets), got dtype {targets.dtype}; "
            "class labels are not standardised"
        )
    if targets.dim() == 1:
        return targets.unsqueeze(-1)
    if targets.dim() != 2:
        raise UserInputError(f"{what} must have shape (N,) or (N, k), got {tuple(targets.shape)}")
    return targets


@dataclass
class TargetScaler:
    """Per-output affine standardisation ``z = (y − mean) / std``; ``mean`` and ``std`` (k,) float64."""

    mean: Tensor
    std: Tensor

    def __post_init__(self) -> None:
        self.mean = torch.as_tensor(self.mean, dtype=torch.float64).reshape(-1)
        self.std = torch.as_tensor(self.std, dtype=torch.float64).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise UserInputError(f"mean and std must have one shape, got {tuple(self.mean.shape)} and {tuple(self.std.shape)}")
        if not (torch.isfinite(self.std).all() and (self.std > 0).all()):
            raise UserInputError(f"std must be finite and > 0, got {self.std.tolist()}")

    @classmethod
    def fit(cls, targets: Tensor) -> TargetScaler:
        """Mean and population std (ddof = 0) per output of the training ``targets`` (N,) or (N, k)."""
        y = _as_matrix(targets, "targets").detach().double()
        if y.shape[0] < 2:
            raise UserInputError(f"fitting a TargetScaler needs at least 2 training targets, got {y.shape[0]}")
        if not torch.isfinite(y).all():
            raise UserInputError("targets contain NaN or inf; remove those rows before fitting the scaler")
        std = y.std(dim=0, unbiased=False)
        flat = (std <= 1e-12 * y.abs().amax(dim=0).clamp_min(1.0)).nonzero().flatten().tolist()
        if flat:
            raise UserInputError(
                f"target column(s) {flat} are constant on the training data; there is nothing to standardise "
                "(and nothing to regress): check the target column"
            )
        return cls(mean=y.mean(dim=0), std=std)

    @property
    def num_outputs(self) -> int:
        return int(self.mean.numel())

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor]:
        if like.shape[-1] != self.num_outputs:
            raise UserInputError(
                f"the scaler was fitted on {self.num_outputs} output(s) but got a tensor with last dimension "
                f"{like.shape[-1]} (shape {tuple(like.shape)})"
            )
        return self.mean.to(like.device, like.dtype), self.std.to(like.device, like.dtype)

    def transform(self, targets: Tensor) -> Tensor:
        """(y − mean) / std, in the shape and dtype of ``targets``."""
        y = _as_matrix(targets, "targets")
        mean, std = self._params(y)
        return ((y - mean) / std).reshape(targets.shape)

    def inverse_transform(self, values: Tensor) -> Tensor:
        """mean + std·z, in the shape and dtype of ``values``."""
        z = _as_matrix(values, "values")
        mean, std = self._params(z)
        return (mean + std * z).reshape(values.shape)

    def inverse_predictive(self, predictive: GaussianPredictive) -> GaussianPredictive:
        """N(μ_z, v_z) on the standardised scale → N(mean + std·μ_z, std²·v_z) on the original (an
        epistemic part scales by std² too)."""
        if not isinstance(predictive, GaussianPredictive):
            raise InputTypeError(f"expected a GaussianPredictive, got {type(predictive).__name__}")
        mean, std = self._params(predictive.mean)
        epistemic = predictive.epistemic_var
        return GaussianPredictive(
            mean=mean + std * predictive.mean,
            var=std.pow(2) * predictive.var,
            epistemic_var=None if epistemic is None else std.pow(2) * epistemic,
        )

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> TargetScaler:
        missing = {"mean", "std"} - set(state)
        if missing:
            raise KeyError(f"a TargetScaler state needs 'mean' and 'std', missing {sorted(missing)}")
        return cls(mean=state["mean"], std=state["std"])
