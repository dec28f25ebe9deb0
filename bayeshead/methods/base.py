"""The :class:`UncertaintyMethod` interface: a whole-model uncertainty method around a
:class:`~bayeshead.model.BayesianModel`.

A method owns what a head cannot see: several backbone passes (MC dropout, BLoB and TFB
samples), several adapter sets (ensembles), or a posterior over adapter parameters
(Laplace-LoRA). Every method has the same surface::

    method = METHODS.get("blob").from_config(config, num_outputs=4)
    method.fit(train, val)
    predictive = method.predict(["a question ..."])        # a Predictive, like a head's
    predictive = method.predict(["sentence a"], text_pair=["sentence b"])   # text pairs
    method.save_pretrained("out/")
    again = load_method("out/")                              # any method, by its saved config

To add one: subclass, give it a pydantic ``Config`` (a :class:`MethodConfig` with a ``Literal``
``kind``), implement what differs (usually :meth:`predict`, and :meth:`fit` or
:meth:`prepare_model`), and register it with ``@METHODS.register("name")`` or the
``bayeshead.methods`` entry-point group. ``single`` (one model) is the default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from bayeshead.config import ComponentConfig, ExperimentConfig
from bayeshead.errors import InputTypeError, UserInputError

if TYPE_CHECKING:
    from bayeshead.backbones.base import Backbone
    from bayeshead.data import TextDataset
    from bayeshead.heads.base import UncertaintyHead
    from bayeshead.model import BayesianModel
    from bayeshead.training.hooks import TrainingHooks
    from bayeshead.types import Predictive

__all__ = ["MethodConfig", "UncertaintyMethod", "Batch", "mixture", "seeded_mixture"]

Batch = Mapping[str, Tensor] | Sequence[str]


class MethodConfig(ComponentConfig):
    """Base of method configs (the ``method`` section of an experiment config)."""


class UncertaintyMethod:
    """A whole-model method: ``fit``, ``predict``, ``save_pretrained``, ``from_pretrained``."""

    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, model: BayesianModel) -> None:
        self.model = model
        self.config = model.config.method
        if not isinstance(self.config, self.Config):
            raise UserInputError(
                f"{type(self).__name__} needs a method config of type {self.Config.__name__}, got "
                f"{type(self.config).__name__} (method.kind={getattr(self.config, 'kind', None)!r})"
            )
        self.history: list[dict[str, float]] = []
        self.posthoc: dict[str, float] = {}

    @property
    def name(self) -> str:
        return str(self.config.kind)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def check_config(cls, config: ExperimentConfig) -> None:
        """Refuse experiment configs this method cannot run (before any weight is loaded)."""

    def prepare_model(self) -> None:
        """Change the freshly built model into this method's form (e.g. Bayesian LoRA factors).
        Runs before training and before saved tensors are loaded. No-op by default."""

    @classmethod
    def from_config(
        cls, config: ExperimentConfig, num_outputs: int, backbone: Backbone | None = None
    ) -> UncertaintyMethod:
        """Build the model named by ``config`` (backbone, adapters, head) and wrap it."""
        from bayeshead.model import BayesianModel

        cls.check_config(config)
        model = BayesianModel.from_config(config, num_outputs=num_outputs, backbone=backbone)
        method = cls(model)
        method.prepare_model()
        return method

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, backbone: Backbone | None = None, trust_remote_code: bool = False
    ) -> UncertaintyMethod:
        """Rebuild a method written by :meth:`save_pretrained` (any registered method);
        ``trust_remote_code`` as in :func:`~bayeshead.methods.load_method`."""
        from bayeshead.methods.loading import load_method

        method = load_method(directory, backbone=backbone, trust_remote_code=trust_remote_code)
        if not isinstance(method, cls):
            raise UserInputError(
                f"{directory} holds a {type(method).__name__} (method.kind={method.name!r}), not a "
                f"{cls.__name__}; load it with bayeshead.methods.load_method(directory)"
            )
        return method

    # -- heads (all of them: several for ensembles) ---------------------------------------------
    def heads(self) -> list[UncertaintyHead]:
        """Every head whose weights this method trains (for a start from LM-head rows)."""
        return [self.model.head]

    def trainable_parameters(self) -> int:
        """Numbers trained by this method (all members of an ensemble)."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    # -- training -------------------------------------------------------------------------------
    def training_hooks(self) -> TrainingHooks | None:
        """What the trainer adds to the model's own objective (a KL term, a validation predictive)."""
        return None

    def fit(
        self,
        train: TextDataset,
        val: TextDataset | None = None,
        *,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
    ) -> list[dict[str, float]]:
        """Train the model (the trainer's loop and post-hoc stage), then :meth:`fit_posthoc`."""
        from bayeshead.training import Trainer

        trainer = Trainer(self.model, checkpoint_dir=checkpoint_dir, resume=resume, hooks=self.training_hooks())
        self.history = trainer.fit(train, val)
        self.posthoc = dict(trainer.posthoc)
        self.posthoc.update(self.fit_posthoc(train, val))
        return self.history

    def fit_posthoc(self, train: TextDataset, val: TextDataset | None) -> dict[str, float]:
        """The method's own post-hoc stage after training (Laplace over adapters, TFB's search);
        returns what it chose, by name. No-op by default."""
        return {}

    # -- prediction -----------------------------------------------------------------------------
    def predict(
        self,
        batch: Batch,
        *,
        text_pair: Sequence[str] | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Predictive:
        """The predictive for a tokenized batch, a list of texts, or (``text_pair``) text pairs;
        regression predictives are in the targets' units."""
        return self.model.predict(batch, text_pair=text_pair, n_samples=n_samples, generator=generator)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode for the duration (no dropout unless a method switches it on), restored after."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    # -- persistence ----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Tensor]:
        """Tensors beyond the model's head and adapters (ensemble members, posterior factors)."""
        return {}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`extra_state` returned."""
        if state:
            raise UserInputError(
                f"method {self.name!r} keeps no extra state but the saved folder has tensors {sorted(state)[:5]}"
            )

    def save_pretrained(self, directory: str | Path) -> Path:
        """``config.json`` (with the ``method`` section), ``metadata.json``, the head and adapter
        tensors, and ``method.safetensors`` when the method has extra state."""
        from bayeshead.serialization import save_model

        return save_model(self.model, directory, extra=self.extra_state())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r})"


def mixture(parts: Sequence[Predictive]) -> Predictive:
    """The equal-weight mixture (1/S)·Σ_s p_s of S predictives of one kind: categorical ones by
    :meth:`~bayeshead.types.CategoricalPredictive.from_sample_log_probs` (member probabilities
    kept as samples), Gaussian ones moment-matched by
    :meth:`~bayeshead.types.GaussianPredictive.from_samples` (mean of the means; variance = mean
    of (v_s + μ_s²) − μ²; the variance of the means kept as the epistemic part)."""
    from bayeshead.types import CategoricalPredictive, GaussianPredictive

    parts = list(parts)
    if not parts:
        raise UserInputError("mixture needs at least one predictive")
    if all(isinstance(p, CategoricalPredictive) for p in parts):
        return CategoricalPredictive.from_sample_log_probs(torch.stack([p.log_probs for p in parts]))  # type: ignore[misc]
    if all(isinstance(p, GaussianPredictive) for p in parts):
        means = torch.stack([p.mean for p in parts])  # type: ignore[attr-defined]
        return GaussianPredictive.from_samples(means, torch.stack([p.var for p in parts]))  # type: ignore[attr-defined]
    kinds = sorted({type(p).__name__ for p in parts})
    raise InputTypeError(f"mixture: the predictives must all be categorical or all Gaussian, got {kinds}")


def seeded_mixture(model: torch.nn.Module, n: int, generator: torch.Generator | None, run: Any) -> Predictive:
    """:func:`mixture` of ``n`` predictives ``run()`` with torch's global RNG seeded from
    ``generator`` inside ``torch.random.fork_rng`` (dropout and Bayesian-LoRA noise draw from the
    global RNG), so the passes are reproducible and the caller's RNG state is untouched."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    param = next(iter(model.parameters()), None)
    devices = [param.device] if param is not None and param.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        parts = [run() for _ in range(n)]
    return mixture(parts)
