"""``bayeshead validate --deep``: the checks that need the backbone's weights.

Plain ``validate`` checks everything a config says on its own. ``--deep`` also loads the
backbone and builds the model as ``train`` would (adapters injected, method and head built), so
that a rank larger than a layer, a ``max_length`` beyond the model's positions, target modules
that match no layer, an unusable device or backbone path, and a method that does not fit the
adapter all fail here, in seconds, as one-line errors (exit 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bayeshead.config import ExperimentConfig

__all__ = ["deep_check"]


def deep_check(config: ExperimentConfig, trust_remote_code: bool = False) -> str:
    """Load the backbone named in ``config`` and build the configured method on it (a
    classification head with 2 classes, or 1 target for a regression head); return a one-line
    summary. Every problem found is a :class:`~bayeshead.errors.UserInputError`."""
    from bayeshead.backbones.huggingface import HuggingFaceBackbone
    from bayeshead.cli import preflight
    from bayeshead.methods import build_method
    from bayeshead.registry import HEADS

    preflight.check_trust_remote_code(config, trust_remote_code)
    preflight.check_backbone(config)
    backbone = HuggingFaceBackbone.from_config(config.backbone)
    preflight.check_positions(backbone, config.backbone.max_length)
    regression = HEADS.get(config.head.kind).task_type == "regression"
    method = build_method(config, num_outputs=1 if regression else 2, backbone=backbone)
    adapted = method.model.adapted_modules
    if config.adapter is None:
        adapter = "no adapter (frozen backbone)"
    else:
        rank = getattr(config.adapter, "rank", None)
        adapter = f"{config.adapter.kind}{'' if rank is None else f' rank {rank}'} on {len(adapted)} layers"
    return (
        f"ok: backbone {config.backbone.name_or_path} loaded (feature width {backbone.feature_dim}, "
        f"max_length {config.backbone.max_length}); {adapter}; head {config.head.kind}; method {config.method.kind}"
    )
