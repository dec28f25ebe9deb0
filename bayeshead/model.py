""":class:`BayesianModel` = backbone (with optional adapters) + uncertainty head.

    model = BayesianModel.from_config(load_config("exp.yaml"), num_outputs=3)
    model.fit(train, val)
    predictive = model.predict(["a text", "another"])
    model.save_pretrained("out/")
    again = BayesianModel.from_pretrained("out/")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bayeshead.backbones.base import Backbone
from bayeshead.config import ExperimentConfig
from bayeshead.heads.base import UncertaintyHead
from bayeshead.registry import HEADS
from bayeshead.types import Predictive

__all__ = ["BayesianModel"]


class BayesianModel(nn.Module):
    """A backbone whose features feed a Bayesian head; adapters, if any, live in the backbone."""

    def __init__(
        self,
        backbone: Backbone,
        head: UncertaintyHead,
        config: ExperimentConfig | None = None,
        adapted_modules: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if head.in_features != backbone.feature_dim:
            raise ValueError(
                f"head takes {head.in_features} features but the backbone gives {backbone.feature_dim}"
            )
        self.backbone = backbone
        self.head = head
        self.config = config or ExperimentConfig(head=head.config)
        self.adapted_modules = list(adapted_modules)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: ExperimentConfig, num_outputs: int, backbone: Backbone | None = None
    ) -> BayesianModel:
        """Load the backbone named in ``config`` (unless given), inject the adapter it names
        (freezing everything else; without an adapter the backbone is frozen), build the head."""
        if backbone is None:
            from bayeshead.backbones.huggingface import HuggingFaceBackbone

            backbone = HuggingFaceBackbone.from_config(config.backbone)
        adapted: list[str] = []
        if config.adapter is not None:
            from bayeshead.adapters import inject_adapters

            adapted = inject_adapters(backbone.model, config.adapter)
        else:
            backbone.requires_grad_(False)
        head_cls = HEADS.get(config.head.kind)
        head = head_cls.from_config(config.head, backbone.feature_dim, num_outputs)
        return cls(backbone, head, config, adapted)

    # -- features and prediction --------------------------------------------------------------
    def _as_batch(self, batch: Mapping[str, Tensor] | Sequence[str]) -> Mapping[str, Tensor]:
        if isinstance(batch, Mapping):
            return batch
        return self.backbone.tokenize(batch)

    def features(self, batch: Mapping[str, Tensor] | Sequence[str]) -> Tensor:
        """Backbone features (B, d) for a tokenized batch or a list of texts."""
        return self.backbone.features(self._as_batch(batch))

    def forward(self, batch: Mapping[str, Tensor] | Sequence[str]) -> Tensor:
        return self.features(batch)

    @property
    def has_trainable_backbone(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    @torch.no_grad()
    def predict(
        self,
        batch: Mapping[str, Tensor] | Sequence[str],
        *,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Predictive:
        """The head's predictive for a tokenized batch or a list of texts (eval mode)."""
        was_training = self.training
        self.eval()
        if n_samples is None:
            n_samples = self.config.evaluation.n_samples
        try:
            return self.head.predict_model(self, self._as_batch(batch), n_samples=n_samples, generator=generator)
        finally:
            self.train(was_training)

    def fit(
        self,
        train: Any,
        val: Any = None,
        *,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
    ) -> list[dict[str, float]]:
        """Train on a :class:`~bayeshead.data.TextDataset` with the config's optimizer and
        training options (alternating or joint, see :class:`~bayeshead.training.Trainer`), then
        run the head's post-hoc fit; returns one log row per mini-batch."""
        from bayeshead.training import Trainer

        return Trainer(self, checkpoint_dir=checkpoint_dir, resume=resume).fit(train, val)

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``metadata.json`` and safetensors weights to ``directory``."""
        from bayeshead.serialization import save_model

        return save_model(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, backbone: Backbone | None = None) -> BayesianModel:
        """Rebuild a model written by :meth:`save_pretrained`; refuses unknown schema versions,
        missing files and tensors of the wrong shape."""
        from bayeshead.serialization import load_model

        return load_model(directory, backbone=backbone)
