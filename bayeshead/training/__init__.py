"""Training: the trainer, schedules, checkpoints and distributed helpers."""

from bayeshead.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from bayeshead.training.distributed import DistContext, init_distributed
from bayeshead.training.feature_fit import FeatureFit, fit_head_on_features
from bayeshead.training.hooks import StepInfo, TrainingHooks
from bayeshead.training.trainer import Trainer

__all__ = [
    "Trainer",
    "fit_head_on_features",
    "FeatureFit",
    "TrainingHooks",
    "StepInfo",
    "DistContext",
    "init_distributed",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
]
