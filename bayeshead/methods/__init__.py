"""Whole-model uncertainty methods (registered in :data:`bayeshead.registry.METHODS`).

A method wraps a :class:`~bayeshead.model.BayesianModel` and owns the part of the uncertainty
that lives inside the backbone: full MC-dropout, adapter deep ensembles, Laplace over adapter
parameters (Laplace-LoRA), BLoB and TFB. ``single`` is one model whose head carries all of it.
Heads never reach back into the model; methods do.
"""

from bayeshead.methods.base import MethodConfig, UncertaintyMethod
from bayeshead.methods.loading import load_method

__all__ = ["MethodConfig", "UncertaintyMethod", "load_method", "build_method"]


def build_method(config, num_outputs: int, backbone=None) -> UncertaintyMethod:  # noqa: ANN001
    """The method named by ``config.method.kind`` (default ``single``), built from ``config``."""
    from bayeshead.registry import METHODS

    return METHODS.get(config.method.kind).from_config(config, num_outputs=num_outputs, backbone=backbone)
