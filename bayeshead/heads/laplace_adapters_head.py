"""``"laplace_adapters"``: Laplace-LoRA (Yang et al. 2024) as a registered method.

Training is MAP: a softmax linear head (weight decay λ) with the adapters. After training the
trainer calls :meth:`LaplaceAdaptersHead.fit_posthoc_model`, which fits the GGN-Laplace posterior
over the adapter parameters (LoRA A/B, or PoLAR's Θ with U, V fixed) with
:func:`~bayeshead.methods.adapter_laplace.fit_adapter_laplace` and chooses the prior precision δ by
maximising the Laplace log marginal likelihood

    log Z(δ) = log p(D|θ*) − ½δ‖θ*‖² + ½P·log δ − ½·log|H + δI|

over log δ ∈ [−10, 10] (bounded Brent search; ``prior_optimization="none"`` keeps the configured δ).
Prediction is model-level (the GLM predictive needs J = ∂f/∂θ through the backbone), so the head
overrides :meth:`predict_model`; :meth:`predict` on features alone gives the MAP softmax.

The posterior (P numbers for ``diag``, P×P for ``full``) lives in memory; ``save_pretrained``
keeps the MAP weights and δ, and a reloaded model must call ``fit_posthoc_model`` again before a
Laplace prediction (it refuses rather than silently predicting with the MAP).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from scipy.optimize import minimize_scalar
from torch import Tensor

from bayeshead.heads.deterministic import DeterministicHead, DeterministicHeadConfig
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive

if TYPE_CHECKING:
    from bayeshead.data import TextDataset
    from bayeshead.methods.adapter_laplace import AdapterLaplace
    from bayeshead.model import BayesianModel

__all__ = ["LaplaceAdaptersHead", "LaplaceAdaptersConfig", "optimize_log_prior_precision"]

_NAME = "laplace_adapters head"


class LaplaceAdaptersConfig(DeterministicHeadConfig):
    kind: Literal["laplace_adapters"] = "laplace_adapters"  # type: ignore[assignment]
    parameters: Literal["auto", "lora", "polar_theta"] = Field(
        "auto", description="Which adapter tensors get the Gaussian: LoRA A/B, PoLAR Θ, or whichever is present."
    )
    hessian_structure: Literal["diag", "full"] = "diag"
    prior_precision: PositiveFloat = Field(1.0, description="δ, or where the marglik search reports from.")
    prior_optimization: Literal["marglik", "none"] = "marglik"
    link: Literal["probit", "mc"] = "probit"
    n_samples: PositiveInt = Field(100, description="Monte-Carlo samples of the 'mc' link.")
    fit_batch_size: PositiveInt = Field(8, description="Examples per Jacobian batch while fitting.")


def optimize_log_prior_precision(laplace: AdapterLaplace, bounds: tuple[float, float] = (-10.0, 10.0)) -> float:
    """argmax_δ log Z(δ) over log δ in ``bounds`` (Brent's bounded search); returns δ."""
    result = minimize_scalar(
        lambda log_delta: -float(laplace.log_marginal_likelihood(math.exp(log_delta))),
        bounds=bounds,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return math.exp(float(result.x))


@HEADS.register("laplace_adapters", config=LaplaceAdaptersConfig)
class LaplaceAdaptersHead(DeterministicHead):
    """MAP softmax head + post-hoc Laplace over the adapter parameters (GLM predictive)."""

    Config = LaplaceAdaptersConfig  # type: ignore[assignment]
    config: LaplaceAdaptersConfig  # type: ignore[assignment]
    posthoc_data = "model"

    def __init__(self, in_features: int, num_outputs: int, config: LaplaceAdaptersConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        self.register_buffer("prior_precision", torch.tensor(float(self.config.prior_precision), dtype=torch.float64))
        self.laplace: AdapterLaplace | None = None

    def fit_posthoc_model(self, model: BayesianModel, train: TextDataset, val: TextDataset | None = None) -> None:
        """Fit the posterior at the current (MAP) adapters on ``train`` and choose δ."""
        from bayeshead.methods.adapter_laplace import fit_adapter_laplace

        if model.head is not self:
            raise ValueError(f"{_NAME}: fit_posthoc_model needs the model this head belongs to")
        cfg = self.config
        batches = train.batches(cfg.fit_batch_size)
        laplace = fit_adapter_laplace(
            model, batches, params=cfg.parameters, prior_precision=cfg.prior_precision, structure=cfg.hessian_structure
        )
        if cfg.prior_optimization == "marglik":
            laplace.set_prior_precision(optimize_log_prior_precision(laplace))
        self.prior_precision.fill_(float(laplace.prior_precision))
        self.laplace = laplace

    def predict_model(
        self,
        model: BayesianModel,
        batch: Mapping[str, Tensor] | Sequence[str],
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        if self.laplace is None:
            raise RuntimeError(
                f"{_NAME}: no Laplace posterior in memory (not fitted yet, or the model was reloaded); "
                "call model.head.fit_posthoc_model(model, train_data) first"
            )
        return self.laplace.predict(batch, link=self.config.link, n_samples=n_samples or self.config.n_samples, generator=generator)

    def predict_while_training(
        self,
        model: BayesianModel,
        batch: Mapping[str, Tensor] | Sequence[str],
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """During training the posterior does not exist yet: validation scores the MAP softmax
        network being trained (the mean the Laplace posterior will be centred on)."""
        return self.predict(model.features(batch))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", structure={self.config.hessian_structure}, fitted={self.laplace is not None}"

    def fit_posthoc(self, features: Tensor, targets: Tensor, **kwargs: Any) -> None:
        raise TypeError(
            f"{_NAME}: the posterior is over adapter parameters, so it needs the model, not features; "
            "use fit_posthoc_model(model, train) (the trainer does this after training)"
        )
