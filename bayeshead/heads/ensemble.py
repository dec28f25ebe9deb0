"""Deep ensembles (Lakshminarayanan et al. 2017) over one frozen backbone.

M members, each a MAP softmax head (and, with adapters, its own adapter parameters) started
from a different seed; the predictive is the mixture p(y | x) = (1/M)·Σ_m softmax(f_m(x)),
with the per-member probabilities kept for the mutual information.

* :class:`EnsembleHead` (``"ensemble"``): M linear heads on shared features. The members'
  losses are summed, so one optimizer step trains every member on its own gradient; they
  differ by initialisation (the mini-batches are shared). One backbone pass per prediction.
* :class:`AdapterEnsemble`: M adapter parameter sets for a backbone holding adapters once.
  The frozen base weights exist once in memory; member m's adapter values are swapped into
  the live adapter modules (:meth:`AdapterEnsemble.member`) for training or prediction, so a
  prediction costs M backbone passes. The member sets are buffers (saved with the state_dict).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import Tensor, nn

from bayeshead.heads.base import HeadConfig, UncertaintyHead, check_class_targets, check_features
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive, LossTerms

if TYPE_CHECKING:
    from bayeshead.adapters import AdapterConfig

__all__ = ["EnsembleHead", "EnsembleHeadConfig", "AdapterEnsemble"]

_NAME = "ensemble head"


class EnsembleHeadConfig(HeadConfig):
    kind: Literal["ensemble"] = "ensemble"
    members: PositiveInt = Field(5, description="M, the number of ensemble members.")
    seed: NonNegativeInt = Field(0, description="Member m is initialised with seed + m.")
    weight_decay: NonNegativeFloat = 0.0
    bias: bool = True


@HEADS.register("ensemble", config=EnsembleHeadConfig)
class EnsembleHead(UncertaintyHead):
    """Deep ensemble of M softmax heads (seeds seed..seed+M-1) on shared features."""

    Config = EnsembleHeadConfig
    config: EnsembleHeadConfig

    def __init__(self, in_features: int, num_outputs: int, config: EnsembleHeadConfig | None = None) -> None:
        super().__init__(in_features, num_outputs, config)
        cfg = self.config
        members = []
        for m in range(cfg.members):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + m)
                members.append(nn.Linear(in_features, num_outputs, bias=cfg.bias))
        self.members = nn.ModuleList(members)

    def member_logits(self, features: Tensor) -> Tensor:
        """Logits of every member, shape (M, B, C)."""
        phi = check_features(features, self.in_features, _NAME)
        return torch.stack([layer(phi.to(layer.weight.dtype)) for layer in self.members])

    def loss(self, features: Tensor, targets: Tensor) -> LossTerms:
        """Σ_m [mean CE of member m + (λ/2)·‖W_m‖²]; ``nll`` logs the members' average CE."""
        logits = self.member_logits(features)
        targets = check_class_targets(targets, logits.shape[1], self.num_outputs, _NAME).to(logits.device)
        m, b, c = logits.shape
        per_member = nn.functional.cross_entropy(
            logits.reshape(m * b, c), targets.repeat(m), reduction="none"
        ).reshape(m, b).mean(1)
        total = per_member.sum()
        parts = {"nll": per_member.mean().detach()}
        if self.config.weight_decay > 0:
            penalty = 0.5 * self.config.weight_decay * sum(layer.weight.pow(2).sum() for layer in self.members)
            total = total + penalty
            parts["weight_decay"] = penalty.detach()
        return LossTerms(total=total, parts=parts)

    def predict(
        self,
        features: Tensor,
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """The uniform mixture of the M members' softmaxes; sampling arguments are ignored."""
        return CategoricalPredictive.from_sample_logits(self.member_logits(features))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, members={self.config.members}"


def _buffer_name(member: int, key: str) -> str:
    return f"m{member}__{key.replace('.', '__')}"


class AdapterEnsemble(nn.Module):
    """M adapter parameter sets over one backbone ``model`` (adapters injected once).

    ``AdapterEnsemble(model, config, members=M, seed=s)`` injects ``config``'s adapters into
    ``model`` if it has none, then draws member m's adapter initialisation with seed s + m
    (by constructing the adapter class on the same, shared, base layer). Use
    ``with ens.member(m): ...`` to train or run member m: its values are loaded into the live
    adapters on entry and copied back on exit.
    """

    def __init__(self, model: nn.Module, config: AdapterConfig, members: int, seed: int = 0) -> None:
        super().__init__()
        from bayeshead.adapters import adapter_modules, inject_adapters
        from bayeshead.registry import ADAPTERS

        if members <= 0:
            raise ValueError(f"AdapterEnsemble: members must be a positive integer, got {members}")
        if not adapter_modules(model):
            inject_adapters(model, config)
        self.members = int(members)
        self._model = [model]  # not a submodule: the backbone is owned (and saved) elsewhere
        adapter_cls = ADAPTERS.get(config.kind)
        self.keys: list[str] = []
        for m in range(self.members):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + m)
                for name, adapter in adapter_modules(model).items():
                    fresh = adapter_cls(adapter.base_layer, config)  # shares the base layer
                    for pname, param in fresh.named_parameters():
                        if pname.startswith("base_layer."):
                            continue
                        key = f"{name}.{pname}" if name else pname
                        if m == 0:
                            self.keys.append(key)
                        self.register_buffer(_buffer_name(m, key), param.detach().clone())
        self._active: int | None = None

    @property
    def model(self) -> nn.Module:
        return self._model[0]

    def member_state(self, member: int) -> dict[str, Tensor]:
        """Member ``member``'s adapter values, keyed as ``adapter_state_dict`` keys them."""
        if not 0 <= member < self.members:
            raise IndexError(f"AdapterEnsemble: member must lie in [0, {self.members}), got {member}")
        return {key: getattr(self, _buffer_name(member, key)) for key in self.keys}

    @contextlib.contextmanager
    def member(self, member: int) -> Iterator[None]:
        """Load member ``member`` into the live adapters; write the (trained) values back on exit."""
        from bayeshead.adapters import adapter_state_dict, load_adapter_state_dict

        if self._active is not None:
            raise RuntimeError(f"AdapterEnsemble: member {self._active} is already active; exit its block first")
        state = self.member_state(member)
        load_adapter_state_dict(self.model, state)
        self._active = member
        try:
            yield
        finally:
            self._active = None
            live = adapter_state_dict(self.model)
            with torch.no_grad():
                for key, buf in state.items():
                    buf.copy_(live[key])

    @torch.no_grad()
    def predict(
        self,
        features_fn: nn.Module | object,
        heads: Sequence[UncertaintyHead],
        batch: Mapping[str, Tensor] | Sequence[str],
    ) -> CategoricalPredictive:
        """(1/M)·Σ_m softmax of head m on the features of member m's adapters; M backbone
        passes through ``features_fn(batch)`` (e.g. ``BayesianModel.features``)."""
        if len(heads) != self.members:
            raise ValueError(f"AdapterEnsemble: expected {self.members} heads (one per member), got {len(heads)}")
        log_probs = []
        for m, head in enumerate(heads):
            with self.member(m):
                pred = head.predict(features_fn(batch))  # type: ignore[operator]
            assert pred.log_probs is not None
            log_probs.append(pred.log_probs)
        stacked = torch.stack(log_probs)
        log_mean = torch.logsumexp(stacked, dim=0) - math.log(self.members)
        return CategoricalPredictive(probs=log_mean.exp(), log_probs=log_mean, samples=stacked.exp())
