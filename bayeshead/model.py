""":class:`BayesianModel` = backbone (with optional adapters) + uncertainty head.

    model = BayesianModel.from_config(load_config("exp.yaml"), num_outputs=3)
    model.fit(train, val)
    predictive = model.predict(["a text", "another"])
    predictive = model.predict(["a man rides a horse"], text_pair=["a person on a horse"])  # pairs
    model.save_pretrained("out/")
    again = BayesianModel.from_pretrained("out/")
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from bayeshead.backbones.base import Backbone
from bayeshead.backbones.option_groups import (
    OPTION_COUNTS,
    flatten_groups,
    is_option_groups,
    option_batch,
    pad_option_features,
)
from bayeshead.config import ExperimentConfig
from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.heads.base import UncertaintyHead
from bayeshead.registry import HEADS
from bayeshead.types import GaussianPredictive, Predictive

if TYPE_CHECKING:
    from bayeshead.data.scaling import TargetScaler

__all__ = ["BayesianModel"]


def _backbone_device(backbone: Backbone) -> torch.device | None:
    """The device of the backbone's weights (None for a backbone without parameters)."""
    device = getattr(backbone, "device", None)
    if isinstance(device, torch.device):
        return device
    param = next(iter(backbone.parameters()), None)
    return None if param is None else param.device


def _feature_width(backbone: Backbone, head: UncertaintyHead) -> int:
    """What the head is fed: the backbone's features, or its per-option features (multiple choice)."""
    if head.task_type == "multiple_choice":
        return getattr(backbone, "option_feature_dim", backbone.feature_dim)
    return backbone.feature_dim


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
        width = _feature_width(backbone, head)
        if head.in_features != width:
            raise UserInputError(f"head takes {head.in_features} features but the backbone gives {width}")
        self.backbone = backbone
        self.head = head
        self.config = config or ExperimentConfig(head=head.config)
        self.adapted_modules = list(adapted_modules)
        #: regression: the training targets' standardisation (set by the trainer, saved with the model)
        self.target_scaler: TargetScaler | None = None

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
        width = backbone.option_feature_dim if head_cls.task_type == "multiple_choice" else backbone.feature_dim
        head = head_cls.from_config(config.head, width, num_outputs)
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
            raise InputTypeError(
                f"init_head_from_answers: the backbone {type(self.backbone).__name__} has no answer_head_rows; "
                "expected a HuggingFaceBackbone around a causal LM (backbone.model_class=causal_lm)"
            )
        if isinstance(answers, str):
            raise InputTypeError(
                f"init_head_from_answers: answers must be a list of strings (one per class), got the string "
                f"{answers!r}; e.g. [' A', ' B', ' C', ' D']"
            )
        answers = list(answers)
        if len(answers) != self.head.num_outputs:
            raise UserInputError(
                f"init_head_from_answers: got {len(answers)} answers {answers!r} but the head has "
                f"{self.head.num_outputs} classes; give one answer per class, in class order"
            )
        weight, bias = rows_of(answers)
        init_head_from_rows(self.head, weight, bias)

    # -- features and prediction --------------------------------------------------------------
    def as_batch(
        self, batch: Mapping[str, Tensor] | Sequence[str], text_pair: Sequence[str] | None = None
    ) -> Mapping[str, Tensor]:
        """A tokenized batch (a list of texts is tokenized once, so several passes can share it).
        With ``text_pair`` each ``(batch[i], text_pair[i])`` is one input, tokenized as a pair
        (:meth:`~bayeshead.backbones.base.Backbone.tokenize`). Option groups (tuples of option
        texts) are tokenized flat, with their option counts under ``"option_counts"``."""
        if isinstance(batch, Mapping):
            if text_pair is not None:
                raise InputTypeError(
                    "text_pair goes with a list of first texts, not with an already tokenized batch; "
                    "tokenize the pairs with backbone.tokenize(texts, text_pair) or pass the texts"
                )
            return batch
        if isinstance(batch, str):
            raise InputTypeError(f"expected a list of texts or a tokenized batch, got the string {batch[:40]!r}; wrap it in a list")
        texts = list(batch)
        if not texts:
            raise UserInputError("expected at least one text, got an empty list")
        if is_option_groups(texts):
            if text_pair is not None:
                raise InputTypeError(
                    "text_pair does not combine with option groups; put each option's full text in its group"
                )
            flat, counts = flatten_groups(texts)
            return {**self.backbone.tokenize(flat), OPTION_COUNTS: counts}
        if text_pair is None:
            return self.backbone.tokenize(texts)
        if isinstance(text_pair, str):
            raise InputTypeError(f"text_pair must be a list of texts, got the string {text_pair[:40]!r}; wrap it in a list")
        return self.backbone.tokenize(texts, list(text_pair))

    def features(
        self, batch: Mapping[str, Tensor] | Sequence[str], text_pair: Sequence[str] | None = None
    ) -> Tensor:
        """Backbone features (B, d) for a tokenized batch, a list of texts, or (with
        ``text_pair``) a list of text pairs; for option groups (multiple choice, one tuple of
        option texts per question) the per-option features (Q, K, d), NaN rows where a question
        has fewer than K options (:mod:`bayeshead.backbones.option_groups`; with
        ``backbone.option_lm_score`` the last column is the LM's score of the option,
        :mod:`bayeshead.backbones.option_scores`)."""
        tokenized, counts = option_batch(self.as_batch(batch, text_pair))
        if counts is None:
            return self.backbone.features(tokenized)
        return pad_option_features(self.backbone.option_features(tokenized, counts), counts)

    def forward(self, batch: Mapping[str, Tensor] | Sequence[str], text_pair: Sequence[str] | None = None) -> Tensor:
        return self.features(batch, text_pair)

    def to_target_units(self, predictive: Predictive) -> Predictive:
        """Map a regression predictive from the standardised training scale back to the targets'
        units, N(m + s·μ, s²·v) (:meth:`~bayeshead.data.scaling.TargetScaler.inverse_predictive`);
        anything else (no scaler, a classification predictive) is returned as it is."""
        if self.target_scaler is None or not isinstance(predictive, GaussianPredictive):
            return predictive
        return self.target_scaler.inverse_predictive(predictive)

    @property
    def has_trainable_backbone(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    @torch.no_grad()
    def predict(
        self,
        batch: Mapping[str, Tensor] | Sequence[str],
        *,
        text_pair: Sequence[str] | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Predictive:
        """The head's predictive for a tokenized batch, a list of texts or (``text_pair``) of text
        pairs: one backbone pass in eval mode, then
        :meth:`~bayeshead.heads.base.UncertaintyHead.predict` on the features; a regression
        predictive is returned in the targets' units (:meth:`to_target_units`).
        Whole-model methods (several passes, adapter posteriors) are :mod:`bayeshead.methods`.

        With ``evaluation.merge_adapters`` the adapters are folded into the base weights for the
        pass (:func:`~bayeshead.adapters.merged.merged_adapters`) and restored bit for bit after
        it. Sampling methods (BLoB, TFB, MC dropout) call the backbone and head themselves and
        never come through here, so they never merge."""
        was_training = self.training
        self.eval()
        if n_samples is None:
            n_samples = self.config.evaluation.n_samples
        try:
            with self._merged_for_prediction():
                features = self.features(batch, text_pair)
            return self.to_target_units(self.head.predict(features, n_samples=n_samples, generator=generator))
        finally:
            self.train(was_training)

    def _merged_for_prediction(self) -> contextlib.AbstractContextManager[Any]:
        """``merged_adapters(backbone)`` when ``evaluation.merge_adapters`` is set and the backbone
        holds adapters; a no-op context otherwise."""
        if not self.config.evaluation.merge_adapters:
            return contextlib.nullcontext()
        from bayeshead.adapters import adapter_modules, merged_adapters

        if not adapter_modules(self.backbone):
            return contextlib.nullcontext()
        return merged_adapters(self.backbone)

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
        run the head's post-hoc fit; returns one log row per mini-batch. ``training.seed`` seeds
        Python's ``random``, NumPy and torch as training starts; the initial weights are drawn
        by :meth:`from_config`, so seed before it (:func:`bayeshead.seeding.seed_everything`)."""
        from bayeshead.training import Trainer

        return Trainer(self, checkpoint_dir=checkpoint_dir, resume=resume).fit(train, val)

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``metadata.json`` and safetensors weights to ``directory``."""
        from bayeshead.serialization import save_model

        return save_model(self, directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, backbone: Backbone | None = None, trust_remote_code: bool = False
    ) -> BayesianModel:
        """Rebuild a model written by :meth:`save_pretrained`; refuses unknown schema versions,
        missing files and tensors of the wrong shape. A folder written by a whole-model method
        (``method.kind`` other than ``single``) loads with :func:`bayeshead.methods.load_method`.
        ``trust_remote_code`` is never read from the folder: pass True only for a backbone whose
        own Python code you trust to run."""
        from bayeshead.serialization import load_model

        return load_model(directory, backbone=backbone, trust_remote_code=trust_remote_code)
