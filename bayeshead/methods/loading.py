"""Load any saved model or method: :func:`load_method`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bayeshead.registry import METHODS

if TYPE_CHECKING:
    from bayeshead.backbones.base import Backbone
    from bayeshead.methods.base import UncertaintyMethod

__all__ = ["load_method"]


def load_method(
    directory: str | Path, backbone: Backbone | None = None, trust_remote_code: bool = False
) -> UncertaintyMethod:
    """Rebuild the method saved in ``directory`` by ``save_pretrained``: its config's
    ``method.kind`` picks the class, the model is rebuilt from the config (and put into the
    method's form, e.g. Bayesian LoRA factors), then the saved head, adapter and method tensors
    are loaded. A plain model folder loads as the ``single`` method.

    Everything is verified first (:func:`bayeshead.serialization.read_saved`: manifest, schema,
    config/metadata agreement, finite tensors). ``trust_remote_code`` is the caller's decision
    and is never read from the folder: True lets the backbone's own Python code run on load."""
    from bayeshead.serialization import load_method_state, load_model_state, read_saved

    config, meta = read_saved(directory, trust_remote_code=trust_remote_code)
    num_outputs = int(meta.get("head", {})["num_outputs"])
    method = METHODS.get(config.method.kind).from_config(config, num_outputs=num_outputs, backbone=backbone)
    load_model_state(method.model, directory, meta)
    method.load_extra_state(load_method_state(directory, meta))
    method.model.eval()
    return method
