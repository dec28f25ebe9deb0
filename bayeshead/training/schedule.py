"""Learning-rate multipliers: linear warm-up, then constant, linear or cosine decay.

The multiplier is a pure function of the step, so a resumed run needs nothing but the step count:

    warm-up (s < W):   m(s) = (s + 1) / W
    constant:          m(s) = 1
    linear:            m(s) = max(0, (T − s) / (T − W))
    cosine:            m(s) = ½ (1 + cos(π · (s − W) / (T − W)))      (Loshchilov & Hutter 2017)

with W warm-up steps and T total steps; s counts optimizer steps from 0.
"""

from __future__ import annotations

import math

import torch

from bayeshead.errors import UserInputError

__all__ = ["lr_multiplier", "apply_lr"]


def lr_multiplier(step: int, total_steps: int, warmup_steps: int = 0, schedule: str = "constant") -> float:
    """The factor on the base learning rate at ``step`` (0-based) of ``total_steps``."""
    if step < 0 or total_steps <= 0:
        raise UserInputError(f"step must be >= 0 and total_steps > 0, got step={step}, total_steps={total_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise UserInputError(f"schedule must be 'constant', 'linear' or 'cosine', got {schedule!r}")


def apply_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    """Set every group's lr to its base lr (remembered in ``group['base_lr']``) times ``multiplier``."""
    for group in optimizer.param_groups:
        base = group.setdefault("base_lr", group["lr"])
        group["lr"] = base * multiplier
