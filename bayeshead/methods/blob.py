"""``blob``: Bayesian Low-Rank Adaptation by Backpropagation (Wang, Shi, Han, Wang, Yu, Wang,
NeurIPS 2024, "BLoB: Bayesian Low-Rank Adaptation by Backpropagation for Large Language Models").

Every LoRA module's A becomes a Gaussian q(A) = N(M, diag σ²), σ = ρ² (ρ ~ U[ε/√2, ε] at the
start, ε = 0.05), B stays a point value, prior p(A) = N(0, β² I) with β = 0.2
(:class:`~bayeshead.adapters.bayesian_lora.BayesianLoRALinear`). Training minimises the
mini-batch negative ELBO with one flipout sample of A per forward pass,

    L_i = −(1/b)·Σ_{n ∈ batch i} log p(y_n | x_n, A ~ q) + π_i·(M/N)·KL(q(A) ‖ p(A)),

with π_i = 1/M (M mini-batches per epoch, so the KL weighs 1/N per example, as the trainer's
other priors do) or, with ``kl_reweighting``, the reference's schedule π_i = 2^i / (2^(M+1) − 1)
over the batches i = 1..M of an epoch (Σ_i π_i ≈ 1; early batches carry little KL). The KL is the
closed form, in float64.

``optimizer: joint`` (the default) is this objective as the paper states it, stepped by the
configured optimizer over M, B and ρ (and the head) together. ``optimizer: reference`` follows the
reference code (Wang-ML-Lab/bayesian-peft, ``modelwrappers/blob.py``): the configured optimizer
steps the NLL over everything but ρ; then a separate SGD (lr ``kl_lr``, the trainer's schedule)
steps M on π_i·∂KL/∂M and ρ on ∂NLL/∂ρ + π_i·∂KL/∂ρ -- so ρ moves only in the SGD step, and the
KL is not divided by the batch size (the reference's scale). The reference's M for the
re-weighting with γ (a function of N) is not reproduced: M is the number of batches per epoch.

Prediction averages ``n_samples`` (N = 10) sampled passes, p(y | x) ≈ (1/N)·Σ_s p(y | x, A_s),
keeping the per-sample probabilities for the mutual information; N = 0 is the mean model
(A = M, one pass; BLoB's "N = 0" rows). Validation during training scores
``validation_samples`` passes (1 by default, as the reference does). Cost: N backbone passes per
prediction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import ClassVar, Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveFloat
from torch import Tensor

from bayeshead.config import ExperimentConfig
from bayeshead.errors import UserInputError
from bayeshead.methods.base import Batch, MethodConfig, UncertaintyMethod, seeded_mixture
from bayeshead.registry import METHODS
from bayeshead.search_space import LogUniform, SearchSpace
from bayeshead.training.hooks import StepInfo, TrainingHooks
from bayeshead.types import Predictive

__all__ = ["BLoB", "BLoBConfig", "kl_weight"]

_NAME = "method blob"


class BLoBConfig(MethodConfig):
    kind: Literal["blob"] = "blob"
    search_space: ClassVar[SearchSpace] = {
        "method.prior_std": LogUniform(low=0.01, high=1.0),
        "method.init_eps": LogUniform(low=0.005, high=0.2),
    }
    prior_std: PositiveFloat = Field(0.2, description="β: the prior N(0, β²) on every entry of A.")
    init_eps: PositiveFloat = Field(0.05, description="ε: ρ starts uniform in [ε/√2, ε] (σ = ρ²).")
    n_samples: NonNegativeInt = Field(10, description="N, sampled passes per prediction; 0 = the mean model.")
    validation_samples: NonNegativeInt = Field(1, description="Sampled passes when scoring validation data during training (0 = mean).")
    kl_reweighting: bool = Field(False, description="π_i = 2^i / (2^(M+1) − 1) over the M batches of an epoch instead of 1/M.")
    optimizer: Literal["joint", "reference"] = Field(
        "joint",
        description="joint: the ELBO in the configured optimizer; reference: NLL by the configured optimizer "
        "(ρ excluded), π_i·KL by a separate SGD over M and ρ (the reference code).",
    )
    kl_lr: PositiveFloat = Field(0.02, description="SGD learning rate of the KL step (optimizer: reference).")


def kl_weight(step_in_epoch: int, steps_per_epoch: int, reweighting: bool) -> float:
    """π_i for batch i = step_in_epoch + 1 of M = steps_per_epoch: 1/M, or 2^i / (2^(M+1) − 1).

    Computed as 2^(i − M − 1) / (1 − 2^(−M−1)) so that large M does not overflow."""
    m = int(steps_per_epoch)
    if m <= 0 or not 0 <= step_in_epoch < m:
        raise UserInputError(f"kl_weight: need 0 <= step_in_epoch < steps_per_epoch, got {step_in_epoch} and {steps_per_epoch}")
    if not reweighting:
        return 1.0 / m
    i = step_in_epoch + 1
    return 2.0 ** (i - m - 1) / (1.0 - 2.0 ** (-m - 1))


@METHODS.register("blob", config=BLoBConfig)
class BLoB(UncertaintyMethod):
    """BLoB: Bayesian LoRA by backprop (Gaussian A, flipout, KL to N(0, β²)); N samples per prediction."""

    Config = BLoBConfig
    config: BLoBConfig

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        if config.adapter is None or config.adapter.kind != "lora":
            got = None if config.adapter is None else config.adapter.kind
            raise UserInputError(
                f"{_NAME} puts a Gaussian on LoRA's A factor and needs adapter.kind=lora, got {got!r}"
            )

    def prepare_model(self) -> None:
        from bayeshead.adapters.bayesian_lora import bayesian_lora_modules, bayesianize_lora

        generator = torch.Generator().manual_seed(self.model.config.training.seed)
        bayesianize_lora(
            self.model.backbone.model,
            prior_std=self.config.prior_std,
            init_eps=self.config.init_eps,
            generator=generator,
        )
        self._modules = bayesian_lora_modules(self.model.backbone.model)

    # -- training -------------------------------------------------------------------------------
    def kl(self) -> Tensor:
        """KL(q(A) ‖ p(A)) summed over the Bayesian LoRA modules (float64)."""
        from bayeshead.adapters.bayesian_lora import bayesian_lora_kl

        return bayesian_lora_kl(self.model.backbone.model)

    def _rhos(self) -> list[torch.nn.Parameter]:
        return [m.lora_A_rho for m in self._modules.values()]

    @contextlib.contextmanager
    def _sampling(self, enabled: bool) -> Iterator[None]:
        from bayeshead.adapters.bayesian_lora import lora_sampling

        with lora_sampling(self.model.backbone.model, enabled):
            yield

    def training_hooks(self) -> TrainingHooks:
        n_train = self.model.head.config.n_train
        cfg = self.config

        def regularizer(info: StepInfo) -> dict[str, Tensor]:
            n = self.model.head.config.n_train or n_train
            pi = kl_weight(info.step_in_epoch, info.steps_per_epoch, cfg.kl_reweighting)
            return {"kl_adapters": self.kl() * (pi * info.steps_per_epoch / float(n))}

        def validation_predict(
            texts: list[str], text_pair: list[str] | None = None, generator: torch.Generator | None = None
        ) -> Predictive:
            return self.predict(texts, text_pair=text_pair, n_samples=cfg.validation_samples, generator=generator)

        hooks = TrainingHooks(
            validation_predict=validation_predict,
            train_context=lambda: self._sampling(True),
        )
        if cfg.optimizer == "joint":
            hooks.regularizer = regularizer
            return hooks
        kl_params = [m.lora_A for m in self._modules.values()] + self._rhos()
        sgd = torch.optim.SGD(kl_params, lr=cfg.kl_lr)

        means = [m.lora_A for m in self._modules.values()]

        def kl_step(info: StepInfo) -> dict[str, float]:
            for p in means:  # their NLL gradient was stepped by the configured optimizer already
                p.grad = None
            # ρ keeps the NLL gradient of this step's backward pass (it is in no other optimizer)
            pi = kl_weight(info.step_in_epoch, info.steps_per_epoch, cfg.kl_reweighting)
            kl = self.kl()
            (kl * pi).backward()
            for group in sgd.param_groups:
                group["lr"] = cfg.kl_lr * info.lr_multiplier
            sgd.step()
            for p in kl_params:
                p.grad = None
            return {"kl_adapters": float(kl.detach()) * pi}

        hooks.exclude = self._rhos()
        hooks.after_step = kl_step
        return hooks

    # -- prediction -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        batch: Batch,
        *,
        text_pair: Sequence[str] | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Predictive:
        """The average of N sampled passes (N = 0: the mean model, one pass); for a regression
        head the moment-matched mixture of the N Gaussians (:func:`~bayeshead.methods.base.mixture`),
        in the targets' units."""
        n = int(self.config.n_samples if n_samples is None else n_samples)
        if n < 0:
            raise UserInputError(f"{_NAME}: n_samples must be >= 0 (0 = the mean model), got {n_samples}")
        model = self.model
        batch = model.as_batch(batch, text_pair)
        with self.evaluating():
            if n == 0:
                with self._sampling(False):
                    pred = model.head.predict(model.features(batch), generator=generator)
                return model.to_target_units(pred)

            def one_pass() -> Predictive:
                return model.head.predict(model.features(batch), n_samples=1, generator=generator)

            with self._sampling(True):
                pred = seeded_mixture(model, n, generator, one_pass)
        return model.to_target_units(pred)
