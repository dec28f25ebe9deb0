"""Monte-Carlo dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation").

Dropout kept on at test time is approximate inference; the predictive averages T stochastic
passes, p(y | x) ≈ (1/T)·Σ_t softmax(f_t(x)), and the spread of the T passes gives the mutual
information (epistemic uncertainty). Two variants:

* ``mode="head"``: dropout with rate p on the features φ before the linear head,
  f_t = W·(m_t ⊙ φ)/(1 − p) + b with m_t ~ Bernoulli(1 − p)^d. One backbone pass; the T head
  samples are drawn from ``generator`` (seedable). Needs p > 0.
* ``mode="full"``: dropout inside the backbone / adapters, T backbone passes
  (``backbone_passes = T``): use :func:`mc_dropout_predict` on the whole model. It switches only
  dropout modules (``nn.Dropout*``) to train mode, never batch norm or anything else.
  (Dropout a model applies functionally from its own ``training`` flag, such as attention-probability
  dropout in some ``transformers`` attention implementations, stays off.)

Training is the softmax cross-entropy with the dropout on (+ (λ/2)·‖W‖², λ = weight decay).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator
from torch import Tensor, nn

from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_features
from bayeshead.heads.deterministic import map_softmax_loss
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive, LossTerms

if TYPE_CHECKING:
    from bayeshead.model import BayesianModel

__all__ = ["MCDropoutHead", "MCDropoutHeadConfig", "mc_dropout_predict", "dropout_modules"]

_NAME = "mc_dropout head"


class MCDropoutHeadConfig(HeadConfig):
    kind: Literal["mc_dropout"] = "mc_dropout"
    p: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout rate on the features (mode 'head').")
    mode: Literal["head", "full"] = "head"
    n_samples: PositiveInt = Field(20, description="T, stochastic passes per prediction when predict gets none.")
    weight_decay: NonNegativeFloat = 0.0
    bias: bool = True

    @model_validator(mode="after")
    def _check(self) -> MCDropoutHeadConfig:
        if self.mode == "head" and self.p == 0.0:
            raise ValueError(
                "mc_dropout with mode='head' needs a dropout rate p > 0 (got p=0.0): with p = 0 every "
                "sample is the same; set p (e.g. 0.1), or use the 'deterministic' head"
            )
        return self


@HEADS.register("mc_dropout", config=MCDropoutHeadConfig)
class MCDropoutHead(UncertaintyHead):
    """MC dropout: dropout on features (T head samples) or in the backbone (T backbone passes)."""

    Config = MCDropoutHeadConfig
    config: MCDropoutHeadConfig

    def __init__(self, in_features: int, num_outputs: int, config: MCDropoutHeadConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        self.linear = nn.Linear(in_features, num_outputs, bias=self.config.bias)
        # Full mode runs the backbone T times; head mode once.
        self.backbone_passes = self.config.n_samples if self.config.mode == "full" else 1

    def _features(self, features: Tensor) -> Tensor:
        return check_features(features, self.in_features, _NAME).to(self.linear.weight.dtype)

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """Cross-entropy of the dropped-out features (dropout only while ``self.training``)."""
        phi = nn.functional.dropout(self._features(features), self.config.p, training=self.training)
        logits = self.linear(phi)
        return map_softmax_loss(logits, targets, self.linear.weight, self.config.weight_decay, _NAME)

    def sample_logits(self, features: Tensor, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """T logit samples (T, B, C) with independent feature-dropout masks drawn from ``generator``."""
        phi = self._features(features)
        if n_samples <= 0:
            raise ValueError(f"{_NAME}: n_samples must be a positive integer, got {n_samples}")
        p = self.config.p
        if p == 0.0:
            return self.linear(phi).unsqueeze(0).expand(n_samples, -1, -1)
        keep = torch.rand((n_samples, *phi.shape), generator=generator, device=phi.device) >= p
        return self.linear(phi * keep.to(phi.dtype) / (1.0 - p))

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """Mode 'head': the average of T feature-dropout samples (samples kept for the mutual
        information). Mode 'full': this pass's softmax (with head dropout if p > 0); average
        passes over the backbone with :func:`mc_dropout_predict`."""
        if self.config.mode == "full":
            if self.config.p == 0.0:
                return CategoricalPredictive.from_logits(self.linear(self._features(features)))
            return CategoricalPredictive.from_logits(self.sample_logits(features, 1, generator)[0])
        t = int(n_samples if n_samples is not None else self.config.n_samples)
        return CategoricalPredictive.from_sample_logits(self.sample_logits(features, t, generator))

    def predict_model(
        self,
        model: Any,
        batch: Any,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """Mode 'full': T passes of backbone + head with dropout on (:func:`mc_dropout_predict`);
        mode 'head': one backbone pass, T head samples."""
        if self.config.mode == "full":
            return mc_dropout_predict(model, batch, n_samples=n_samples, generator=generator)
        return super().predict_model(model, batch, n_samples=n_samples, generator=generator)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.config.p}, mode={self.config.mode!r}"


# -- full mode: T backbone passes with dropout on ------------------------------------------------
def dropout_modules(module: nn.Module) -> list[nn.Module]:
    """Every ``nn.Dropout``-family submodule (``_DropoutNd``: Dropout, Dropout1d/2d/3d, AlphaDropout...)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextlib.contextmanager
def _dropout_on(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Eval mode everywhere except dropout modules; restores every module's flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    drops = dropout_modules(model)
    for m in drops:
        m.train()
    try:
        yield drops
    finally:
        for m, flag in flags:
            m.training = flag


@torch.no_grad()
def mc_dropout_predict(
    model: BayesianModel,
    batch: Mapping[str, Tensor] | Sequence[str],
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> CategoricalPredictive:
    """MC dropout over the whole model: T passes of backbone + head with only the dropout modules
    in train mode; returns the average of the T softmaxes with the per-pass probabilities kept.

    Dropout modules draw from the global RNG; for reproducibility the passes run inside
    ``torch.random.fork_rng`` seeded from ``generator`` (the caller's RNG state is untouched).
    """
    t = int(n_samples if n_samples is not None else getattr(model.head.config, "n_samples", 0) or 0)
    if t <= 0:
        raise ValueError(f"mc_dropout_predict: n_samples must be a positive integer, got {n_samples}")
    with _dropout_on(model) as drops:
        active = [m for m in drops if float(getattr(m, "p", 0.0)) > 0.0]
        if not active:
            raise ValueError(
                "mc_dropout_predict: the model has no dropout module with p > 0, so all passes would be "
                "identical; add dropout to the backbone/adapters (e.g. the adapter's dropout option) or "
                "use mc_dropout with mode='head'"
            )
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        device = next(model.parameters()).device
        devices = [device] if device.type == "cuda" else []
        log_probs = []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for _ in range(t):
                features = model.features(batch)
                pred = model.head.predict(features, n_samples=1, generator=generator)
                assert pred.log_probs is not None
                log_probs.append(pred.log_probs)
    stacked = torch.stack(log_probs)  # (T, B, C)
    log_mean = torch.logsumexp(stacked, dim=0) - math.log(t)
    return CategoricalPredictive(probs=log_mean.exp(), log_probs=log_mean, samples=stacked.exp())
