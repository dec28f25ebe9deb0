"""``ensemble``: a deep ensemble of adapter + head members over one frozen backbone
(Lakshminarayanan, Pritzel, Blundell 2017, "Simple and Scalable Predictive Uncertainty
Estimation using Deep Ensembles").

Member m has its own adapter values and its own head, drawn with seed s + m (s =
``training.seed``; member 0 is the model as built), and is trained by the ordinary trainer with
``training.seed = s + m`` (its own data order). The base weights exist once in memory: member m's
adapter values are loaded into the live adapter modules for its training and its passes, and
written back afterwards. Each member is a :class:`~bayeshead.model.BayesianModel` over the
shared backbone with its own head, so no head is ever swapped inside a model. The predictive is
the mixture

    p(y | x) = (1/M)·Σ_m p_m(y | x),

with the member probabilities kept as samples (mutual information); for a regression head the
M Gaussians are moment-matched (mean of the means, variance = mean of the variances + the
variance of the means, the latter kept as the epistemic part). Cost: M backbone passes per
prediction, M trainings. An ensemble of heads on one feature pass is the ``ensemble`` *head*.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import Field, conint
from torch import Tensor

from bayeshead.config import ExperimentConfig
from bayeshead.errors import UserInputError
from bayeshead.methods.base import Batch, MethodConfig, UncertaintyMethod, mixture
from bayeshead.registry import ADAPTERS, HEADS, METHODS
from bayeshead.search_space import SearchSpace
from bayeshead.types import Predictive

if TYPE_CHECKING:
    from bayeshead.data import TextDataset
    from bayeshead.heads.base import UncertaintyHead
    from bayeshead.model import BayesianModel

__all__ = ["AdapterEnsemble", "AdapterEnsembleConfig"]


class AdapterEnsembleConfig(MethodConfig):
    kind: Literal["ensemble"] = "ensemble"
    # no option of its own: the members (the cost) stay as the suite sets them; the members' adapter,
    # head and optimizer options are tuned through their own spaces
    search_space: ClassVar[SearchSpace] = {}
    members: conint(ge=2) = Field(5, description="M, the number of adapter + head members (at least 2).")  # type: ignore[valid-type]


@METHODS.register("ensemble", config=AdapterEnsembleConfig)
class AdapterEnsemble(UncertaintyMethod):
    """Deep ensemble of M adapter + head members over one frozen backbone (M passes per prediction)."""

    Config = AdapterEnsembleConfig
    config: AdapterEnsembleConfig

    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        if config.adapter is None:
            raise UserInputError(
                "method ensemble trains M adapter sets, but the config has no adapter; set adapter.kind "
                "(e.g. lora), or use the 'ensemble' head for an ensemble of heads on a frozen backbone"
            )

    def prepare_model(self) -> None:
        """Draw members 1..M-1 (adapter values and heads, seed s + m); member 0 is the model."""
        from bayeshead.adapters import adapter_modules, adapter_state_dict
        from bayeshead.model import BayesianModel

        model, config = self.model, self.model.config
        seed = config.training.seed
        adapter_cls = ADAPTERS.get(config.adapter.kind)  # type: ignore[union-attr]
        head_cls = HEADS.get(config.head.kind)
        device = next(iter(model.head.parameters()), torch.empty(0)).device
        self._states: list[dict[str, Tensor]] = [
            {k: v.detach().clone() for k, v in adapter_state_dict(model.backbone.model).items()}
        ]
        self._heads: list[UncertaintyHead] = [model.head]
        for m in range(1, self.config.members):
            state: dict[str, Tensor] = {}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + m)
                for name, adapter in adapter_modules(model.backbone.model).items():
                    fresh = adapter_cls(adapter.base_layer, config.adapter)  # shares the frozen base layer
                    for pname, param in fresh.named_parameters():
                        if not pname.startswith("base_layer."):
                            state[f"{name}.{pname}" if name else pname] = param.detach().clone()
                head = head_cls.from_config(config.head, model.head.in_features, model.head.num_outputs)
            self._states.append(state)
            self._heads.append(head.to(device))
        self._views = [
            BayesianModel(model.backbone, head, self._member_config(m), model.adapted_modules)
            for m, head in enumerate(self._heads)
        ]
        self._active: int | None = None

    def _member_config(self, m: int) -> ExperimentConfig:
        config = self.model.config
        training = config.training.model_copy(update={"seed": config.training.seed + m})
        return config.model_copy(update={"training": training})

    @property
    def members(self) -> int:
        return self.config.members

    def member_model(self, m: int) -> BayesianModel:
        """Member m as a model over the shared backbone (use inside :meth:`member`)."""
        return self._views[m]

    @contextlib.contextmanager
    def member(self, m: int) -> Iterator[BayesianModel]:
        """Load member ``m``'s adapter values into the live adapters; write them back on exit."""
        from bayeshead.adapters import adapter_state_dict, load_adapter_state_dict

        if not 0 <= m < self.members:
            raise IndexError(f"method ensemble: member must lie in [0, {self.members}), got {m}")
        if self._active is not None:
            raise RuntimeError(f"method ensemble: member {self._active} is already active; exit its block first")
        load_adapter_state_dict(self.model.backbone.model, self._states[m])
        self._active = m
        try:
            yield self._views[m]
        finally:
            self._active = None
            live = adapter_state_dict(self.model.backbone.model)
            self._states[m] = {k: live[k].detach().clone() for k in self._states[m]}

    def heads(self) -> list[UncertaintyHead]:
        return list(self._heads)

    def trainable_parameters(self) -> int:
        adapters = sum(t.numel() for t in self._states[0].values())
        heads = sum(p.numel() for h in self._heads for p in h.parameters() if p.requires_grad)
        return self.members * adapters + heads

    def fit(
        self,
        train: TextDataset,
        val: TextDataset | None = None,
        *,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
    ) -> list[dict[str, float]]:
        """Train every member in turn (member m checkpoints under ``checkpoint_dir/member-m``);
        returns the concatenated log, each row tagged with its ``member``."""
        from bayeshead.training import Trainer

        self.history = []
        for m in range(self.members):
            folder = None if checkpoint_dir is None else Path(checkpoint_dir) / f"member-{m}"
            with self.member(m) as view:
                trainer = Trainer(view, checkpoint_dir=folder, resume=resume)
                rows = trainer.fit(train, val)
            self.history.extend({**row, "member": float(m)} for row in rows)
            self.posthoc.update({f"member{m}/{k}": v for k, v in trainer.posthoc.items()})
        # every member standardised the same training targets; the mixture maps back with that scaler
        self.model.target_scaler = self._views[0].target_scaler
        return self.history

    @torch.no_grad()
    def predict(
        self,
        batch: Batch,
        *,
        text_pair: Sequence[str] | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Predictive:
        """The mixture of the M member predictives (M backbone passes), in the targets' units."""
        batch = self.model.as_batch(batch, text_pair)
        parts = []
        with self.evaluating():
            for m in range(self.members):
                with self.member(m) as view:
                    parts.append(view.head.predict(view.features(batch), n_samples=n_samples, generator=generator))
        return self.model.to_target_units(mixture(parts))

    # -- persistence ----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Tensor]:
        state = {f"member{m}.adapter.{k}": v for m, s in enumerate(self._states) for k, v in s.items()}
        for m, head in enumerate(self._heads[1:], start=1):
            state.update({f"member{m}.head.{k}": v for k, v in head.state_dict().items()})
        return state

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        from bayeshead.serialization import SerializationError

        expected = self.extra_state()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise SerializationError(
                f"method ensemble: saved members do not match the config (members={self.members}): "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        for m in range(self.members):
            prefix = f"member{m}.adapter."
            self._states[m] = {k[len(prefix):]: v.clone() for k, v in state.items() if k.startswith(prefix)}
        for m, head in enumerate(self._heads[1:], start=1):
            prefix = f"member{m}.head."
            head.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
