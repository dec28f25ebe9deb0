"""Shared helpers of the regression head tests: synthetic linear-Gaussian data and full-batch training."""

from __future__ import annotations

import torch
from torch import Tensor


def train_full_batch(head: torch.nn.Module, x: Tensor, y: Tensor, steps: int = 100) -> float:
    """Minimise ``head.loss(x, y).total`` with full-batch L-BFGS; returns the final loss."""
    opt = torch.optim.LBFGS(list(head.parameters()), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = head.loss(x, y).total
        loss.backward()
        return loss

    opt.step(closure)
    return float(head.loss(x, y).total.detach())


def linear_gaussian(n: int, d: int, sigma: float, seed: int, k: int = 1) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x ~ N(0, I), y = x Wᵀ + b + σ ε: returns (x, y, W, b), float32."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(k, d, generator=g)
    b = torch.randn(k, generator=g)
    x = torch.randn(n, d, generator=g)
    y = x @ w.T + b + sigma * torch.randn(n, k, generator=g)
    return x, y, w, b
