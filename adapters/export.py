"""Export a model with adapters as a plain ``transformers`` checkpoint.

ΔW is folded into the base weights (W ← W + ΔW) of a copy of the model, the adapters are
replaced by their original ``nn.Linear``/``Conv1D`` layers, and the copy is written with
``save_pretrained`` (safetensors): ``AutoModel.from_pretrained(directory)`` loads it without
bayeshead. The model passed in is not modified.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from bayeshead.adapters.modules import adapter_modules, unload_adapters
from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["export_merged"]


def export_merged(model: nn.Module, directory: str | Path, **save_kwargs: object) -> Path:
    """Write ``model`` with merged adapters to ``directory`` via ``save_pretrained``.

    ``save_kwargs`` go to ``save_pretrained`` (``safe_serialization`` is always on).
    Returns the directory."""
    if not hasattr(model, "save_pretrained"):
        raise InputTypeError(
            f"export_merged needs a transformers PreTrainedModel (with save_pretrained), got "
            f"{type(model).__name__}; pass the Hugging Face model that holds the adapters"
        )
    if not adapter_modules(model):
        raise UserInputError("the model holds no adapters; save it with model.save_pretrained instead")
    plain = unload_adapters(copy.deepcopy(model), merge=True)
    for param in plain.parameters():
        param.requires_grad_(True)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_kwargs.pop("safe_serialization", None)
    plain.save_pretrained(str(directory), **save_kwargs)
    return directory
