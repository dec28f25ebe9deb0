"""Per-layer adapter diagnostics logged during training.

* orthogonality error ‖XᵀX − I‖_F of PoLAR's Stiefel factors U and V (0 on the manifold);
* stable rank ‖ΔW‖_F² / ‖ΔW‖₂² of each adapter update (Rudelson & Vershynin 2007), the
  quantity PoLAR (Lion et al. 2025) shows collapsing towards 1 for LoRA.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["adapter_diagnostics"]


@torch.no_grad()
def adapter_diagnostics(model: nn.Module) -> dict[str, float]:
    """``{"<layer>/stable_rank": ..., "<layer>/orth_U": ..., "<layer>/orth_V": ...}`` per adapted layer."""
    from bayeshead.adapters import adapter_modules

    out: dict[str, float] = {}
    for name, adapter in adapter_modules(model).items():
        rank_fn = getattr(adapter, "stable_rank", None)
        if callable(rank_fn):
            out[f"{name}/stable_rank"] = float(rank_fn())
        orth_fn = getattr(adapter, "orthogonality_error", None)
        if callable(orth_fn):
            for factor, value in orth_fn().items():
                out[f"{name}/orth_{factor}"] = float(value)
    return out
