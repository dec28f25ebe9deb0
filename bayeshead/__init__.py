"""bayeshead: honest uncertainty for fine-tuned transformers.

Adapters (LoRA, PoLAR) x Bayesian heads (VBLL, Laplace, MC-dropout, ...), composed into a
:class:`~bayeshead.model.BayesianModel`. Importing this package is light: it does not import
``transformers``; heavy modules load when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from bayeshead.errors import (
    BayesheadError,
    InputTypeError,
    NotFittedError,
    UsageError,
    UserInputError,
)
from bayeshead.registry import (
    ADAPTERS,
    HEADS,
    OPTIMIZERS,
    REGISTRIES,
    TASKS,
    Registry,
    RegistryError,
)

_LAZY = {
    "ExperimentConfig": "bayeshead.config",
    "load_config": "bayeshead.config",
    "LossTerms": "bayeshead.types",
    "Predictive": "bayeshead.types",
    "CategoricalPredictive": "bayeshead.types",
    "GaussianPredictive": "bayeshead.types",
    "UncertaintyHead": "bayeshead.heads.base",
    "Backbone": "bayeshead.backbones.base",
    "HuggingFaceBackbone": "bayeshead.backbones.huggingface",
    "BayesianModel": "bayeshead.model",
    "TextDataset": "bayeshead.data",
}

__all__ = [
    "BayesheadError",
    "UserInputError",
    "InputTypeError",
    "UsageError",
    "NotFittedError",
    "ADAPTERS",
    "HEADS",
    "OPTIMIZERS",
    "TASKS",
    "REGISTRIES",
    "Registry",
    "RegistryError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bayeshead' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
