"""The values heads exchange with the rest of bayeshead: :class:`LossTerms` and predictives.

A predictive is the distribution a head assigns to the target of each example:

* :class:`CategoricalPredictive` -- class probabilities ``probs`` (B, C), their logarithm
  ``log_probs`` (kept so that the NLL never takes the log of a clipped probability), and
  optionally per-sample probabilities ``samples`` (S, B, C) from which the epistemic part of
  the uncertainty, the mutual information, is computed;
* :class:`GaussianPredictive` -- mean and variance (B, k) for regression, optionally with the
  epistemic part of the variance (``epistemic_var``; moment-matched mixtures keep it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = ["LossTerms", "Predictive", "CategoricalPredictive", "GaussianPredictive"]


@dataclass
class LossTerms:
    """A head's training objective for one mini-batch.

    ``total`` is the scalar to minimise, already per example (the data term averaged over the
    batch, the KL divided by N_train). ``parts`` names its summands (``nll`` or ``nll_bound`` (the negated Jensen bound),
    ``kl``, ``noise_prior``, ``weight_decay``, ...) for logging; ``total`` equals their sum
    unless a head says otherwise.
    """

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Tensor:
        return self.parts[name]

    def __contains__(self, name: object) -> bool:
        return name in self.parts

    def as_floats(self) -> dict[str, float]:
        """Detached Python floats of ``total`` and every part, for logs."""
        out = {"total": float(self.total.detach())}
        out.update({k: float(v.detach()) for k, v in self.parts.items()})
        return out


class Predictive(ABC):
    """The predictive distribution of a batch of B examples."""

    @abstractmethod
    def nll(self, targets: Tensor) -> Tensor:
        """Per-example negative log predictive density, shape (B,)."""

    @abstractmethod
    def entropy(self) -> Tensor:
        """Per-example entropy of the predictive, shape (B,)."""

    @abstractmethod
    def mutual_information(self) -> Tensor:
        """Per-example epistemic uncertainty, shape (B,); zero where the predictive has no samples."""

    @abstractmethod
    def to(self, device: torch.device | str) -> Predictive:
        """The same predictive on another device."""


@dataclass
class CategoricalPredictive(Predictive):
    """Class probabilities ``probs`` (B, C); ``log_probs`` their log, computed stably by the head."""

    probs: Tensor
    log_probs: Tensor | None = None
    samples: Tensor | None = None  # (S, B, C) probabilities of S posterior samples

    def __post_init__(self) -> None:
        if self.probs.dim() != 2:
            raise UserInputError(f"probs must be (batch, classes), got shape {tuple(self.probs.shape)}")
        if self.log_probs is None:
            self.log_probs = torch.log(self.probs)
        if self.samples is not None and (
            self.samples.dim() != 3 or self.samples.shape[1:] != self.probs.shape
        ):
            raise UserInputError(
                f"samples must be (S, {self.probs.shape[0]}, {self.probs.shape[1]}), "
                f"got {tuple(self.samples.shape)}"
            )

    @classmethod
    def from_logits(cls, logits: Tensor) -> CategoricalPredictive:
        """The softmax of ``logits`` (B, C), with the log taken by ``log_softmax``."""
        log_probs = torch.log_softmax(logits, dim=-1)
        return cls(probs=log_probs.exp(), log_probs=log_probs)

    @classmethod
    def from_sample_logits(cls, logits: Tensor) -> CategoricalPredictive:
        """Average the softmax over S samples of logits (S, B, C):
        log p = logsumexp_s log_softmax(z_s) - log S."""
        log_p = torch.log_softmax(logits, dim=-1)
        log_mean = torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0])
        return cls(probs=log_mean.exp(), log_probs=log_mean, samples=log_p.exp())

    @classmethod
    def from_sample_log_probs(cls, log_probs: Tensor) -> CategoricalPredictive:
        """The mixture of S predictives given by their log-probabilities (S, B, C):
        log p = logsumexp_s log p_s − log S, with the S member probabilities kept as samples
        (Monte-Carlo passes, ensemble members)."""
        if log_probs.dim() != 3 or log_probs.shape[0] == 0:
            raise UserInputError(
                f"expected per-sample log-probabilities of shape (S >= 1, batch, classes), got {tuple(log_probs.shape)}"
            )
        log_mean = torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])
        return cls(probs=log_mean.exp(), log_probs=log_mean, samples=log_probs.exp())

    @classmethod
    def cat(cls, parts: list[CategoricalPredictive]) -> CategoricalPredictive:
        """Concatenate the predictives of consecutive batches along the batch axis; samples are
        kept only when every part has the same number of them."""
        if not parts:
            raise UserInputError("CategoricalPredictive.cat needs at least one predictive")
        counts = {None if p.samples is None else p.samples.shape[0] for p in parts}
        samples = None
        if len(counts) == 1 and None not in counts:
            samples = torch.cat([p.samples for p in parts], dim=1)  # type: ignore[misc]
        return cls(
            probs=torch.cat([p.probs for p in parts]),
            log_probs=torch.cat([p.log_probs for p in parts]),  # type: ignore[misc]
            samples=samples,
        )

    def double(self) -> CategoricalPredictive:
        """The same predictive in float64 (metrics are computed in float64)."""
        return CategoricalPredictive(
            probs=self.probs.double(),
            log_probs=None if self.log_probs is None else self.log_probs.double(),
            samples=None if self.samples is None else self.samples.double(),
        )

    @property
    def num_classes(self) -> int:
        return self.probs.shape[-1]

    def nll(self, targets: Tensor) -> Tensor:
        targets = targets.long().to(self.probs.device)
        assert self.log_probs is not None
        return -self.log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        assert self.log_probs is not None
        return -(self.probs * self.log_probs.clamp_min(torch.finfo(self.probs.dtype).min)).sum(-1)

    def mutual_information(self) -> Tensor:
        """H[E_s p_s] - E_s H[p_s] (BALD); zero without samples."""
        if self.samples is None:
            return torch.zeros(self.probs.shape[0], dtype=self.probs.dtype, device=self.probs.device)
        tiny = torch.finfo(self.samples.dtype).tiny
        sample_entropy = -(self.samples * self.samples.clamp_min(tiny).log()).sum(-1).mean(0)
        return (self.entropy() - sample_entropy).clamp_min(0.0)

    def to(self, device: torch.device | str) -> CategoricalPredictive:
        return CategoricalPredictive(
            probs=self.probs.to(device),
            log_probs=None if self.log_probs is None else self.log_probs.to(device),
            samples=None if self.samples is None else self.samples.to(device),
        )


@dataclass
class GaussianPredictive(Predictive):
    """Independent Gaussians per output: ``mean`` and ``var`` of shape (B, k).

    ``epistemic_var`` (B, k), optional, is the part of ``var`` that comes from uncertainty about
    the mean (the model), the rest ``var − epistemic_var`` being the noise (aleatoric) part. A
    mixture of S Gaussians N(μ_s, v_s) (Monte-Carlo passes, ensemble members) is moment-matched
    by :meth:`from_samples`:

        μ = (1/S)·Σ_s μ_s,   v = (1/S)·Σ_s (v_s + μ_s²) − μ²  =  (1/S)·Σ_s v_s + Var_s[μ_s],

    whose epistemic part is Var_s[μ_s] (the population variance of the means); a Bayesian last
    layer gives it in closed form (φᵀSφ).
    """

    mean: Tensor
    var: Tensor
    epistemic_var: Tensor | None = None

    def __post_init__(self) -> None:
        if self.mean.shape != self.var.shape:
            raise UserInputError(
                f"mean and var must have one shape, got {tuple(self.mean.shape)} and {tuple(self.var.shape)}"
            )
        if self.epistemic_var is not None and self.epistemic_var.shape != self.mean.shape:
            raise UserInputError(
                f"epistemic_var must have the shape of mean {tuple(self.mean.shape)}, got "
                f"{tuple(self.epistemic_var.shape)}"
            )

    @classmethod
    def from_samples(cls, means: Tensor, variances: Tensor) -> GaussianPredictive:
        """Moment-match the equal-weight mixture of S Gaussians given by ``means`` and
        ``variances`` (S, B, k): mean (1/S)·Σμ_s, variance (1/S)·Σv_s + Var_s[μ_s] (the same as
        (1/S)·Σ(v_s + μ_s²) − μ², without its cancellation), epistemic part Var_s[μ_s]."""
        if means.dim() != 3 or means.shape != variances.shape or means.shape[0] == 0:
            raise UserInputError(
                "expected per-sample means and variances of one shape (S >= 1, batch, outputs), got "
                f"{tuple(means.shape)} and {tuple(variances.shape)}"
            )
        mean = means.mean(0)
        epistemic = (means - mean).pow(2).mean(0)
        return cls(mean=mean, var=variances.mean(0) + epistemic, epistemic_var=epistemic)

    @property
    def aleatoric_var(self) -> Tensor:
        """``var − epistemic_var`` (all of ``var`` when there is no epistemic part)."""
        if self.epistemic_var is None:
            return self.var
        return self.var - self.epistemic_var

    def nll(self, targets: Tensor) -> Tensor:
        """-log N(y | mean, var), summed over the k outputs."""
        targets = targets.to(self.mean.dtype).reshape(self.mean.shape)
        per_output = 0.5 * (math.log(2 * math.pi) + self.var.log() + (targets - self.mean) ** 2 / self.var)
        return per_output.sum(-1)

    def entropy(self) -> Tensor:
        return (0.5 * (1.0 + math.log(2 * math.pi) + self.var.log())).sum(-1)

    def mutual_information(self) -> Tensor:
        """Σ_j ½·log(v_j / (v_j − e_j)) with e = ``epistemic_var``: the mutual information
        I(y; μ) of the linear-Gaussian model μ ~ N(m, e), y | μ ~ N(μ, v − e), i.e. of the
        predictive with its mean uncertainty and its average noise; zero without an epistemic part."""
        if self.epistemic_var is None:
            return torch.zeros(self.mean.shape[0], dtype=self.mean.dtype, device=self.mean.device)
        aleatoric = self.aleatoric_var.clamp_min(torch.finfo(self.var.dtype).tiny)
        return (0.5 * (self.var.log() - aleatoric.log())).sum(-1)

    def _map(self, fn: Any) -> GaussianPredictive:
        epistemic = None if self.epistemic_var is None else fn(self.epistemic_var)
        return GaussianPredictive(mean=fn(self.mean), var=fn(self.var), epistemic_var=epistemic)

    def to(self, device: torch.device | str) -> GaussianPredictive:
        return self._map(lambda t: t.to(device))

    @classmethod
    def cat(cls, parts: list[GaussianPredictive]) -> GaussianPredictive:
        """Concatenate the predictives of consecutive batches along the batch axis; the epistemic
        part is kept only when every part has one."""
        if not parts:
            raise UserInputError("GaussianPredictive.cat needs at least one predictive")
        epistemic = None
        if all(p.epistemic_var is not None for p in parts):
            epistemic = torch.cat([p.epistemic_var for p in parts])  # type: ignore[misc]
        return cls(mean=torch.cat([p.mean for p in parts]), var=torch.cat([p.var for p in parts]), epistemic_var=epistemic)

    def double(self) -> GaussianPredictive:
        return self._map(lambda t: t.double())
