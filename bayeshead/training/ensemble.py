"""Deep ensembles of adapter + head members over one frozen backbone (Lakshminarayanan et al. 2017).

Member m has its own adapter values (drawn with seed s + m by
:class:`~bayeshead.heads.ensemble.AdapterEnsemble`) and its own head (initialised with seed s + m),
and is trained by the ordinary :class:`~bayeshead.training.Trainer` with ``training.seed = s + m``.
The backbone's base weights exist once in memory: members are swapped into the live adapters.
The predictive is the mixture p(y | x) = (1/M) Σ_m p_m(y | x), with the member probabilities kept
as samples (for the mutual-information OOD score).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from bayeshead.config import ExperimentConfig
from bayeshead.registry import HEADS
from bayeshead.types import CategoricalPredictive

if TYPE_CHECKING:
    from bayeshead.data import TextDataset
    from bayeshead.model import BayesianModel

__all__ = ["DeepEnsemble"]


class DeepEnsemble(nn.Module):
    """``DeepEnsemble(model, members=M)``: ``fit(train, val)``, ``predict(texts)``."""

    def __init__(self, model: BayesianModel, members: int) -> None:
        super().__init__()
        from bayeshead.heads.ensemble import AdapterEnsemble

        config = model.config
        if config.adapter is None:
            raise ValueError(
                "DeepEnsemble needs an adapter in the config (members differ in their adapter values); "
                "for an ensemble of heads on a frozen backbone use head kind 'ensemble'"
            )
        if members < 2:
            raise ValueError(f"DeepEnsemble needs at least 2 members, got {members}")
        self.model = model
        self.members = int(members)
        seed = config.training.seed
        self.adapters = AdapterEnsemble(model.backbone.model, config.adapter, members, seed=seed)
        head_cls = HEADS.get(config.head.kind)
        heads = []
        for m in range(members):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + m)
                heads.append(head_cls.from_config(config.head, model.head.in_features, model.head.num_outputs))
        self.heads = nn.ModuleList(heads)

    def _member_config(self, m: int) -> ExperimentConfig:
        config = self.model.config
        return config.model_copy(update={"training": config.training.model_copy(update={"seed": config.training.seed + m})})

    def fit(self, train: TextDataset, val: TextDataset | None = None) -> list[list[dict[str, float]]]:
        """Train every member in turn; returns one training log per member."""
        from bayeshead.training.trainer import Trainer

        original_head, original_config = self.model.head, self.model.config
        logs = []
        try:
            for m in range(self.members):
                with self.adapters.member(m):
                    self.model.head = self.heads[m]
                    self.model.config = self._member_config(m)
                    logs.append(Trainer(self.model).fit(train, val))
        finally:
            self.model.head, self.model.config = original_head, original_config
        return logs

    @torch.no_grad()
    def predict(
        self, batch: Mapping[str, Tensor] | Sequence[str], *, n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CategoricalPredictive:
        """The mixture of the member predictives (M backbone passes)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return self.adapters.predict(self.model.features, list(self.heads), batch)
        finally:
            self.model.train(was_training)
