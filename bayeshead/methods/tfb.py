"""``tfb``: training-free Bayesianization of a trained LoRA (Shi, Wang, Han, Wang, Wang 2024,
"Training-Free Bayesianization for Low-Rank Adapters of Large Language Models").

The model trains as a plain LoRA (MLE or MAP, the configured head). Afterwards, for every LoRA
module, the thin SVD B = U·diag(d)·Vᵀ gives B' = U·diag(d) and A' = Vᵀ·A (B'A' = BA, so the
mean model is unchanged) and a Gaussian q(A') = N(A', diag σ²) with σ_ij = β / d_i
(:mod:`bayeshead.adapters.tfb`). One scale β for all modules is chosen as the largest value in
[``beta_min``, ``beta_max``] whose relative increase of the anchor-set NLL,

    f(β) = (NLL(β) − NLL(0)) / NLL(0),

stays at or under ``threshold``, by bisection (:func:`~bayeshead.methods.bisection.largest_feasible`).
NLL(β) is the NLL of the ``search_samples``-sample predictive on the anchor set (the training
data, at most ``anchor_size`` examples, seeded), with the same random draws for every β (common
random numbers keep f monotone in practice); the targets are the true labels, or with
``anchor_targets: predictions`` the mean model's own predictions, as the reference does.

Deviation from the reference (Wang-ML-Lab/bayesian-peft ``modelwrappers/tfblora.py``): there the
relative change is divided once more by the anchor-set size N (the threshold then effectively
grows with N) and the value returned is the last *infeasible* midpoint; here f is the plain
relative change and the returned β is the largest midpoint found feasible. The reference's
defaults are kept: β ∈ [0.001, 0.2], threshold 0.01, 10 bisection steps.

Prediction averages ``n_samples`` (N = 10) flipout passes, like BLoB; N = 0 is the mean LoRA.
The σ live in the adapters (ρ = √σ, frozen), so a saved model predicts identically after loading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator
from torch import Tensor

from bayeshead.errors import UserInputError
from bayeshead.methods.base import MethodConfig
from bayeshead.methods.blob import BLoB
from bayeshead.registry import METHODS
from bayeshead.search_space import LogUniform, SearchSpace
from bayeshead.types import GaussianPredictive, Predictive

if TYPE_CHECKING:
    from bayeshead.data import TextDataset

__all__ = ["TFB", "TFBConfig"]

_NAME = "method tfb"


class TFBConfig(MethodConfig):
    kind: Literal["tfb"] = "tfb"
    search_space: ClassVar[SearchSpace] = {"method.threshold": LogUniform(low=1e-3, high=0.1)}
    beta_min: PositiveFloat = Field(1e-3, description="Lower end of the β search.")
    beta_max: PositiveFloat = Field(0.2, description="Upper end of the β search.")
    threshold: PositiveFloat = Field(0.01, description="Largest relative increase of the anchor-set NLL allowed.")
    iterations: PositiveInt = Field(10, description="Bisection steps.")
    anchor_size: PositiveInt | None = Field(256, description="Anchor examples drawn from the training data (null: all).")
    anchor_targets: Literal["labels", "predictions"] = Field(
        "labels", description="Score the anchor NLL against the true labels or the mean model's predictions."
    )
    search_samples: PositiveInt = Field(4, description="Sampled passes per NLL evaluation during the search.")
    n_samples: NonNegativeInt = Field(10, description="N, sampled passes per prediction; 0 = the mean LoRA.")

    @model_validator(mode="after")
    def _range(self) -> TFBConfig:
        if self.beta_min >= self.beta_max:
            raise UserInputError(f"tfb: beta_min must be below beta_max, got {self.beta_min} and {self.beta_max}")
        return self


@METHODS.register("tfb", config=TFBConfig)
class TFB(BLoB):
    """TFB: a trained LoRA Bayesianized after training (SVD, σ = β/d, β by bisection); N samples per prediction."""

    Config = TFBConfig  # type: ignore[assignment]
    config: TFBConfig  # type: ignore[assignment]

    def prepare_model(self) -> None:
        """Bayesian LoRA modules with σ = 0 and ρ frozen: training is that of a plain LoRA."""
        from bayeshead.adapters.bayesian_lora import bayesian_lora_modules, bayesianize_lora

        bayesianize_lora(self.model.backbone.model)
        self._modules = bayesian_lora_modules(self.model.backbone.model)
        for module in self._modules.values():
            module.set_std(0.0, trainable=False)
        self.beta = 0.0

    def training_hooks(self) -> None:  # type: ignore[override]
        return None  # plain LoRA training; sampling stays off (σ = 0 anyway)

    def _set_beta(self, beta: float, singular_values: dict[str, Tensor]) -> None:
        from bayeshead.adapters.tfb import tfb_std

        for name, module in self._modules.items():
            module.set_std(tfb_std(singular_values[name], beta, module.in_features), trainable=False)

    def _anchor_data(self, train: TextDataset) -> TextDataset:
        """The anchor set: ``anchor_size`` training examples (pairs kept), drawn with the training seed."""
        n = len(train)
        size = n if self.config.anchor_size is None else min(self.config.anchor_size, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.model.config.training.seed))[:size]
        return train.subset(order, name="tfb-anchor")

    def fit_posthoc(self, train: TextDataset, val: TextDataset | None) -> dict[str, float]:
        """Re-parameterise every LoRA by the SVD of B, then search β on the anchor set."""
        from bayeshead.adapters.tfb import tfb_factors
        from bayeshead.evaluation import predict_dataset
        from bayeshead.methods.bisection import largest_feasible

        cfg = self.config
        singular_values: dict[str, Tensor] = {}
        with torch.no_grad():
            for name, module in self._modules.items():
                b_new, a_new, d = tfb_factors(module)
                module.lora_B.copy_(b_new)
                module.lora_A.copy_(a_new)
                singular_values[name] = d
        anchor = self._anchor_data(train)
        batch = self.model.config.evaluation.batch_size
        seed = self.model.config.training.seed

        def predict_anchor(samples: int) -> Predictive:
            def predict(texts: list[str], **kwargs: object) -> Predictive:
                return self.predict(texts, n_samples=samples, **kwargs)  # type: ignore[arg-type]

            return predict_dataset(predict, anchor.texts, batch, seed, text_pair=anchor.text_pair)

        def anchor_nll(samples: int) -> float:
            return float(predict_anchor(samples).nll(targets).mean())

        self._set_beta(0.0, singular_values)
        base = predict_anchor(0)
        if cfg.anchor_targets == "labels":
            targets = anchor.labels
        elif isinstance(base, GaussianPredictive):
            targets = base.mean  # the mean model's own predictions
        else:
            targets = base.probs.argmax(-1)  # type: ignore[attr-defined]
        nll0 = float(base.nll(targets).mean())
        if nll0 <= 0.0:
            raise UserInputError(f"{_NAME}: the mean model's anchor NLL is {nll0}; a relative increase is undefined")

        def relative_increase(beta: float) -> float:
            self._set_beta(beta, singular_values)
            return (anchor_nll(cfg.search_samples) - nll0) / nll0

        beta, history = largest_feasible(
            relative_increase, cfg.beta_min, cfg.beta_max, cfg.threshold, iterations=cfg.iterations
        )
        self._warn_at_limit(beta, history)
        self._set_beta(beta, singular_values)
        self.beta = float(beta)
        final = dict(history).get(beta, float("nan"))
        return {"tfb_beta": self.beta, "tfb_anchor_nll0": nll0, "tfb_relative_increase": final, "tfb_evaluations": float(len(history))}

    def _warn_at_limit(self, beta: float, history: list[tuple[float, float]]) -> None:
        """Warn when β is ``beta_max`` (even the largest β kept the NLL increase under the
        threshold) or ``beta_min`` with f(beta_min) over the threshold (no β was feasible)."""
        from bayeshead.posthoc_bounds import warn_at_bound

        cfg = self.config
        if beta >= cfg.beta_max:
            warn_at_bound(
                f"{_NAME}: β", beta, cfg.beta_min, cfg.beta_max, "upper",
                f"even β = beta_max changed the anchor NLL by a relative {history[0][1]:+.3g}, within the threshold "
                f"{cfg.threshold:g}; raise beta_max to let the posterior widen further",
            )
        elif beta <= cfg.beta_min and history[-1][0] == beta and not history[-1][1] <= cfg.threshold:
            warn_at_bound(
                f"{_NAME}: β", beta, cfg.beta_min, cfg.beta_max, "lower",
                f"even β = beta_min changed the anchor NLL by a relative {history[-1][1]:+.3g}, over the threshold "
                f"{cfg.threshold:g}; lower beta_min or raise the threshold",
            )

    # -- persistence: σ lives in the adapters; β is kept for the record ---------------------------
    def extra_state(self) -> dict[str, Tensor]:
        return {"tfb.beta": torch.tensor(self.beta, dtype=torch.float64)}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        if set(state) != {"tfb.beta"}:
            raise UserInputError(f"{_NAME}: expected the saved tensor 'tfb.beta', got {sorted(state)}")
        self.beta = float(state["tfb.beta"])
