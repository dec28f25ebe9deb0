"""``mc_dropout``: Monte-Carlo dropout through the whole model (Gal & Ghahramani 2016).

The model trains as usual with dropout inside the backbone / adapters (``adapter.dropout``, or
the backbone's own dropout modules). At prediction the dropout modules stay on and the
predictive averages T full passes,

    p(y | x) ≈ (1/T)·Σ_t p_head(y | f_t(x)),   f_t = the backbone with dropout mask t,

with the T per-pass probabilities kept for the mutual information (a regression head's T
Gaussians are moment-matched: mean of the means, variance = mean of the variances + the variance
of the means, the latter kept as the epistemic part). Only dropout modules
(``nn.Dropout*``) are switched to train mode, never batch norm or anything else; dropout a
model applies functionally from its own ``training`` flag (attention-probability dropout in some
``transformers`` attention implementations) stays off. Cost: T backbone passes per prediction.
Dropout on the features alone (one backbone pass) is the ``mc_dropout`` *head*.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import ClassVar, Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from bayeshead.errors import UserInputError
from bayeshead.methods.base import Batch, MethodConfig, UncertaintyMethod, seeded_mixture
from bayeshead.registry import METHODS
from bayeshead.search_space import SearchSpace, Uniform
from bayeshead.types import Predictive

__all__ = ["MCDropout", "MCDropoutConfig", "dropout_modules", "dropout_on"]


class MCDropoutConfig(MethodConfig):
    kind: Literal["mc_dropout"] = "mc_dropout"
    search_space: ClassVar[SearchSpace] = {"adapter.dropout": Uniform(low=0.05, high=0.3)}
    n_samples: PositiveInt = Field(10, description="T, stochastic backbone passes per prediction.")


def dropout_modules(module: nn.Module) -> list[nn.Module]:
    """Every ``nn.Dropout``-family submodule (``_DropoutNd``: Dropout, Dropout1d/2d/3d, AlphaDropout...)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


@contextlib.contextmanager
def dropout_on(model: nn.Module) -> Iterator[list[nn.Module]]:
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


@METHODS.register("mc_dropout", config=MCDropoutConfig)
class MCDropout(UncertaintyMethod):
    """MC dropout inside the backbone/adapters: T backbone passes per prediction."""

    Config = MCDropoutConfig
    config: MCDropoutConfig

    def prepare_model(self) -> None:
        active = [m for m in dropout_modules(self.model.backbone) if float(getattr(m, "p", 0.0)) > 0.0]
        if not active:
            raise UserInputError(
                "method mc_dropout: the backbone has no dropout module with p > 0, so every pass would be "
                "the same; set adapter.dropout (e.g. 0.1), or use the mc_dropout head (dropout on the features)"
            )

    @torch.no_grad()
    def predict(
        self,
        batch: Batch,
        *,
        text_pair: Sequence[str] | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Predictive:
        """The mixture of T dropout passes: per-pass probabilities kept as samples, or for a
        regression head the moment-matched Gaussian with the variance of the pass means as its
        epistemic part (:func:`~bayeshead.methods.base.mixture`), in the targets' units."""
        t = int(n_samples if n_samples is not None else self.config.n_samples)
        if t <= 0:
            raise UserInputError(f"method mc_dropout: n_samples must be a positive integer, got {n_samples}")
        model = self.model
        batch = model.as_batch(batch, text_pair)

        def one_pass() -> Predictive:
            return model.head.predict(model.features(batch), n_samples=1, generator=generator)

        with dropout_on(model):
            pred = seeded_mixture(model, t, generator, one_pass)
        return model.to_target_units(pred)
