"""Shared machinery of low-rank adapters around ``nn.Linear`` and GPT-2 ``Conv1D``.

``nn.Linear`` stores its weight as (out, in) = (m, n); ``transformers``' ``Conv1D`` stores it
transposed, (in, out) = (n, m). Adapters always work in the (m, n) layout and transpose when
they touch a ``Conv1D`` weight.

Mixed precision: when the base weight is bf16/fp16 the adapter factors are kept in fp32; the
adapter path casts its input activations to fp32 and its result back to the output dtype.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor, nn

from bayeshead.adapters.base import Adapter
from bayeshead.adapters.config import AdapterConfig
from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["LowRankAdapter", "is_conv1d", "is_linear_like", "linear_shape", "factor_dtype"]


def is_conv1d(module: nn.Module) -> bool:
    """True for ``transformers.pytorch_utils.Conv1D`` (checked by name: no import needed)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def is_linear_like(module: nn.Module) -> bool:
    """``nn.Linear`` or GPT-2 ``Conv1D`` (adapters never count as linear-like)."""
    if isinstance(module, Adapter):
        return False
    return isinstance(module, nn.Linear) or is_conv1d(module)


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """(out_features m, in_features n) of an ``nn.Linear`` or ``Conv1D``."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    if is_conv1d(module):
        n, m = module.weight.shape
        return int(m), int(n)
    raise InputTypeError(
        f"adapters wrap nn.Linear or transformers Conv1D layers, got {type(module).__name__}; "
        "choose target_modules that name linear layers"
    )


def factor_dtype(weight: Tensor) -> torch.dtype:
    """fp32 for half-precision (or integer/quantized) base weights, else the weight's dtype."""
    return weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32


class LowRankAdapter(Adapter):
    """ΔW = scaling · (a rank-r product), scaling = α/r, added to a frozen base layer.

    Subclasses define the factors, :meth:`_delta_path` (the low-rank map applied to x without
    forming ΔW) and :meth:`_delta` (ΔW in the (m, n) layout, without the scaling)."""

    def __init__(self, base_layer: nn.Module, config: AdapterConfig) -> None:
        super().__init__()
        out_features, in_features = linear_shape(base_layer)
        rank = int(config.rank)
        if rank > min(out_features, in_features):
            raise UserInputError(
                f"{type(self).__name__}: rank r={rank} exceeds min(out, in) = "
                f"min({out_features}, {in_features}) = {min(out_features, in_features)} of "
                f"{type(base_layer).__name__}; use rank <= {min(out_features, in_features)}"
            )
        self.base_layer = base_layer
        for param in base_layer.parameters():
            param.requires_grad_(False)
        self.out_features = out_features
        self.in_features = in_features
        self.rank = rank
        self.alpha = float(config.alpha)
        self.scaling = self.alpha / rank
        self.fan_in_fan_out = is_conv1d(base_layer)
        self.dropout: nn.Module = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.merged = False

    # -- helpers -----------------------------------------------------------------------
    @property
    def base_weight(self) -> Tensor:
        return self.base_layer.weight

    @property
    def _factor_kwargs(self) -> dict:
        weight = self.base_weight
        return {"dtype": factor_dtype(weight), "device": weight.device}

    @abstractmethod
    def _delta_path(self, x: Tensor) -> Tensor:
        """The unscaled low-rank map x ↦ (product) x in the factors' dtype (…, n) -> (…, m)."""

    @abstractmethod
    def _delta(self) -> Tensor:
        """The unscaled product in the (m, n) layout, in the factors' dtype."""

    @abstractmethod
    def stable_rank(self) -> float:
        """sr(ΔW) = ‖ΔW‖²_F / ‖ΔW‖²_2 from the r×r core (0 when ΔW = 0)."""

    # -- Adapter interface ---------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        result = self.base_layer(x)
        if self.merged:
            return result
        dtype = self._factor_kwargs["dtype"]
        update = self._delta_path(self.dropout(x).to(dtype)) * self.scaling
        return result + update.to(result.dtype)

    def delta_weight(self) -> Tensor:
        """ΔW = (α/r)·(product) in the (out, in) layout of ``nn.Linear.weight``."""
        return self._delta() * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """W ← W + ΔW (transposed for ``Conv1D``); forward then skips the low-rank path.
        A no-op when already merged. In bf16/fp16 the sum W + ΔW is formed in the factors' fp32
        and rounded once to the weight dtype (within half an ulp of the exact sum)."""
        if self.merged:
            return
        self._fold(+1.0)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W ← W − ΔW: undoes :meth:`merge` (exactly in fp32 up to round-off). No-op if unmerged."""
        if not self.merged:
            return
        self._fold(-1.0)
        self.merged = False

    def _fold(self, sign: float) -> None:
        """W ← round(W + sign·ΔW), the sum taken in the wider of the two dtypes."""
        delta = self.delta_weight()
        delta = delta.T if self.fan_in_fan_out else delta
        weight = self.base_weight
        if delta.dtype == weight.dtype:
            weight.add_(delta, alpha=sign)
        else:
            wide = torch.promote_types(weight.dtype, delta.dtype)
            weight.copy_((weight.to(wide) + sign * delta.to(wide)).to(weight.dtype))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"alpha={self.alpha}, merged={self.merged}"
        )


def kaiming_uniform_(tensor: Tensor) -> Tensor:
    """Kaiming-uniform with a = √5 (the ``nn.Linear`` default, as LoRA initialises A)."""
    return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
