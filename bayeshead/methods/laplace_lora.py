"""``laplace_lora``: Laplace over the adapter parameters (Yang, Robeyns, Wang, Aitchison 2024,
"Bayesian Low-rank Adaptation for Large Language Models", ICLR).

Training is MAP: a softmax linear head (``head.kind=deterministic``, weight decay λ) with the
adapters, validated on the MAP network; for multiple choice in the per-option formulation the
per-option MAP head ``head.kind=deterministic_options`` (one question = one example, its logits
the scores of its own options; every structure, see :mod:`bayeshead.methods.adapter_laplace`).
After training, :func:`~bayeshead.methods.adapter_laplace.fit_adapter_laplace` fits the GGN
Laplace posterior over the adapter parameters θ (LoRA A/B, or PoLAR's Θ with U, V fixed) with a
diagonal, dense or Kronecker-factored (K-FAC, the paper's choice) curvature, and the prior
precision δ maximises the Laplace log marginal likelihood

    log Z(δ) = log p(D|θ*) − ½δ‖θ*‖² + ½P·log δ − ½·log|H + δI|

over log δ ∈ [−10, 10] (bounded Brent search; ``prior_optimization="none"`` keeps the configured δ).
The predictive is the linearised (GLM) one, f ~ N(f_MAP, J Σ Jᵀ), with the probit or a seeded
Monte-Carlo link; J = ∂f/∂θ needs the backbone, so this is a method, not a head. The fitted
posterior is saved with the model and restored by ``load_method``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor

from bayeshead.config import ExperimentConfig
from bayeshead.errors import UserInputError
from bayeshead.methods.base import Batch, MethodConfig, UncertaintyMethod
from bayeshead.registry import METHODS
from bayeshead.search_space import LogUniform, SearchSpace
from bayeshead.types import CategoricalPredictive

if TYPE_CHECKING:
    from bayeshead.data import TextDataset
    from bayeshead.methods.adapter_laplace import AdapterLaplace

__all__ = ["LaplaceLoRA", "LaplaceLoRAConfig"]

_NAME = "method laplace_lora"


class LaplaceLoRAConfig(MethodConfig):
    kind: Literal["laplace_lora"] = "laplace_lora"
    search_space: ClassVar[SearchSpace] = {
        # only where the marginal likelihood does not choose δ
        "method.prior_precision": LogUniform(low=1e-2, high=1e4, when={"method.prior_optimization": "none"}),
    }
    parameters: Literal["auto", "lora", "polar_theta"] = Field(
        "auto", description="Which adapter tensors get the Gaussian: LoRA A/B, PoLAR Θ, or whichever is present."
    )
    hessian_structure: Literal["diag", "full", "kron"] = Field(
        "kron", description="GGN structure: diagonal, dense, or Kronecker-factored per layer (K-FAC)."
    )
    prior_precision: PositiveFloat = Field(1.0, description="δ, or where the marginal-likelihood search reports from.")
    prior_optimization: Literal["marglik", "none"] = "marglik"
    link: Literal["probit", "mc"] = "probit"
    n_samples: PositiveInt = Field(100, description="Monte-Carlo samples of the 'mc' link.")
    fit_batch_size: PositiveInt = Field(8, description="Examples per Jacobian batch while fitting.")


@METHODS.register("laplace_lora", config=LaplaceLoRAConfig)
class LaplaceLoRA(UncertaintyMethod):
    """Laplace-LoRA: MAP training, then a GGN Laplace posterior over the adapters (GLM predictive)."""

    Config = LaplaceLoRAConfig
    config: LaplaceLoRAConfig

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        if config.adapter is None:
            raise UserInputError(f"{_NAME}: the posterior is over adapter parameters, but the config has no adapter; set adapter.kind")
        from bayeshead.registry import HEADS

        if HEADS.get(config.head.kind).task_type == "regression":
            raise UserInputError(
                f"{_NAME} is for classification only: its GLM predictive linearises a softmax head, but "
                f"head.kind={config.head.kind!r} is a regression head; for regression with a Laplace posterior "
                "use head.kind=laplace_regression (last-layer Laplace, closed-form Gaussian predictive)"
            )
        if HEADS.get(config.head.kind).task_type == "multiple_choice":
            if config.head.kind != "deterministic_options":
                raise UserInputError(
                    f"{_NAME}: the GLM predictive linearises a MAP softmax head; of the per-option heads it takes "
                    f"head.kind=deterministic_options (weight decay gives the MAP), got head.kind={config.head.kind!r}"
                )
            return
        if config.head.kind != "deterministic":
            raise UserInputError(
                f"{_NAME}: the GLM predictive linearises a MAP softmax head, got head.kind={config.head.kind!r}; "
                "set head.kind=deterministic (weight decay gives the MAP)"
            )

    def prepare_model(self) -> None:
        self.laplace: AdapterLaplace | None = None

    def fit_posthoc(self, train: TextDataset, val: TextDataset | None) -> dict[str, float]:
        """Fit the posterior at the MAP adapters on ``train`` (texts, or option groups for a
        per-option head) and choose δ."""
        from bayeshead.methods.adapter_laplace import (
            fit_adapter_laplace,
            optimize_log_prior_precision,
        )

        cfg = self.config
        laplace = fit_adapter_laplace(
            self.model,
            # tokenized here so that text pairs (TextBatch.text_pair) reach the backbone as pairs
            ((self.model.as_batch(b.texts, b.text_pair), b.labels) for b in train.batches(cfg.fit_batch_size)),
            params=cfg.parameters,
            prior_precision=cfg.prior_precision,
            structure=cfg.hessian_structure,
        )
        if cfg.prior_optimization == "marglik":
            laplace.set_prior_precision(optimize_log_prior_precision(laplace))
        self.laplace = laplace
        return {"prior_precision": float(laplace.prior_precision)}

    @torch.no_grad()
    def predict(
        self,
        batch: Batch,
        *,
        text_pair: Sequence[str] | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        if self.laplace is None:
            raise UserInputError(
                f"{_NAME}: no posterior yet; call fit(train, val) first (a saved model restores its posterior)"
            )
        batch = self.model.as_batch(batch, text_pair)
        with self.evaluating():
            return self.laplace.predict(
                batch, link=self.config.link, n_samples=n_samples or self.config.n_samples, generator=generator
            )

    # -- persistence: the fitted posterior travels with the model ------------------------------------
    def extra_state(self) -> dict[str, Tensor]:
        if self.laplace is None:
            return {}
        return {f"laplace.{k}": v for k, v in self.laplace.state_tensors().items()}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        from bayeshead.methods.adapter_laplace import AdapterLaplace

        if not state:
            self.laplace = None
            return
        tensors = {k.removeprefix("laplace."): v for k, v in state.items()}
        self.laplace = AdapterLaplace.from_state_tensors(
            self.model, tensors, params=self.config.parameters, structure=self.config.hessian_structure
        )
