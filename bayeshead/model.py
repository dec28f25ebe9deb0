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


def _backbone_device(backbone: Backbone) -> torch.device | None:
    """The device of the backbone's weights (None for a backbone without parameters)."""
    device = getattr(backbone, "device", None)
    if isinstance(device, torch.device):
        return device
    param = next(iter(backbone.parameters()), None)
    return None if param is None else param.device


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
        device = _backbone_device(backbone)
        if device is not None:
            head = head.to(device)  # heads are built on the CPU; run them where the features are
        return cls(backbone, head, config, adapted)

    def init_head_from_answers(self, answers: Sequence[str]) -> None:
        """Start the head at a causal LM's answer-token logits: its class rows become the LM-head
        rows of the answers' tokens t_c (" A", " B", ... or " true"/" false"), so that with
        ``last_token`` features the head's (mean) logits are z_c = w_{t_c}ᵀ h_last (+ b_{t_c}),
        the LM's next-token logits of the answers (as BLoB / Laplace-LoRA score them)."""
        from bayeshead.heads.init_rows import init_head_from_rows

        rows_of = getattr(self.backbone, "answer_head_rows", None)
        if not callable(rows_of):
            raise TypeError(
                f"init_head_from_answers: the backbone {type(self.backbone).__name__} has no answer_head_rows; "
                "expected a HuggingFaceBackbone around a causal LM (backbone.model_class=causal_lm)"
            )
        if isinstance(answers, str):
            raise TypeError(
                f"init_head_from_answers: answers must be a list of strings (one per class), got the string "
                f"{answers!r}; e.g. [' A', ' B', ' C', ' D']"
            )
        answers = list(answers)
        if len(answers) != self.head.num_outputs:
            raise ValueError(
                f"init_head_from_answers: got {len(answers)} answers {answers!r} but the head has "
                f"{self.head.num_outputs} classes; give one answer per class, in class order"
            )
        weight, bias = rows_of(answers)
        init_head_from_rows(self.head, weight, bias)

    # -- features and prediction --------------------------------------------------------------
    def as_batch(self, batch: Mapping[str, Tensor] | Sequence[str]) -> Mapping[str, Tensor]:
        """A tokenized batch (a list of texts is tokenized once, so several passes can share it)."""
        if isinstance(batch, Mapping):
            return batch
        if isinstance(batch, str):
            raise TypeError(f"expected a list of texts or a tokenized batch, got the string {batch[:40]!r}; wrap it in a list")
        texts = list(batch)
        if not texts:
            raise ValueError("expected at least one text, got an empty list")
        return self.backbone.tokenize(texts)

    def features(self, batch: Mapping[str, Tensor] | Sequence[str]) -> Tensor:
        """Backbone features (B, d) for a tokenized batch or a list of texts."""
        return self.backbone.features(self.as_batch(batch))

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
        """The head's predictive for a tokenized batch or a list of texts: one backbone pass in
        eval mode, then :meth:`~bayeshead.heads.base.UncertaintyHead.predict` on the features.
        Whole-model methods (several passes, adapter posteriors) are :mod:`bayeshead.methods`."""
        was_training = self.training
        self.eval()
        if n_samples is None:
            n_samples = self.config.evaluation.n_samples
        try:
            return self.head.predict(self.features(batch), n_samples=n_samples, generator=generator)
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
        missing files and tensors of the wrong shape. A folder written by a whole-model method
        (``method.kind`` other than ``single``) loads with :func:`bayeshead.methods.load_method`."""
        from bayeshead.serialization import load_model

        return load_model(directory, backbone=backbone)
