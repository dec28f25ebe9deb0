"""Mask-aware pooling of token states (B, L, d) into one vector per sequence (B, d).

* ``cls``: the first real token (index 0 with right padding, the first unmasked position
  with left padding);
* ``mean``: Σ_t m_t h_t / Σ_t m_t over the attention mask m;
* ``last_token``: the last real token (the prompt's final token for causal LMs), found from
  the mask, so right and left padding give the same result.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayeshead.errors import UserInputError

__all__ = ["POOLINGS", "pool", "pooled_features"]

POOLINGS = ("cls", "mean", "last_token")


def _check(hidden: Tensor, mask: Tensor) -> None:
    if hidden.dim() != 3:
        raise UserInputError(f"hidden states must be (batch, length, dim), got {tuple(hidden.shape)}")
    if mask.shape != hidden.shape[:2]:
        raise UserInputError(
            f"attention mask must be (batch, length) = {tuple(hidden.shape[:2])}, got {tuple(mask.shape)}"
        )
    empty = (mask.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise UserInputError(f"rows {empty[:10]} of the attention mask are all zero (empty sequences)")


def pool(hidden: Tensor, mask: Tensor, method: str) -> Tensor:
    """Pool ``hidden`` (B, L, d) with attention ``mask`` (B, L) by ``method`` in POOLINGS."""
    _check(hidden, mask)
    mask = mask.to(hidden.device)
    rows = mask.new_tensor(range(hidden.shape[0])).long()
    positions = mask.new_tensor(range(hidden.shape[1])).long()
    real = mask > 0
    if method == "mean":
        weights = real.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1)
    if method == "cls":
        first = (real.long() * (hidden.shape[1] - positions)).argmax(dim=1)
        return hidden[rows, first]
    if method == "last_token":
        last = (real.long() * (positions + 1)).argmax(dim=1)
        return hidden[rows, last]
    raise UserInputError(f"unknown pooling {method!r}; expected one of {POOLINGS}")


def pooled_features(hidden: Tensor, mask: Tensor, method: str) -> Tensor:
    """:func:`pool`, as features: fp32 for a half-precision model, its own precision for fp32/fp64."""
    pooled = pool(hidden, mask, method)
    return pooled if pooled.dtype in (torch.float32, torch.float64) else pooled.float()

