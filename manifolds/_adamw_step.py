"""One AdamW update of one tensor (Loshchilov & Hutter 2019), written out so that manifold
optimizers can share it. The arithmetic follows ``torch.optim.AdamW``'s single-tensor path
operation by operation, so a Euclidean parameter gets the same numbers as torch's AdamW:

    p ← p·(1 − lr·wd)
    m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²
    p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + eps)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["adamw_update", "init_adam_state"]


def init_adam_state(state: dict[str, Any], param: Tensor) -> None:
    """Create ``step`` (a Python int), ``exp_avg`` and ``exp_avg_sq`` on first use."""
    if len(state) == 0:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)


@torch.no_grad()
def adamw_update(
    param: Tensor,
    grad: Tensor,
    state: dict[str, Any],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    """Apply one AdamW step to ``param`` in place using ``grad`` (not modified)."""
    init_adam_state(state, param)
    beta1, beta2 = betas
    state["step"] = int(state["step"]) + 1
    step = state["step"]
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-step_size)
