"""LoRA (Hu et al. 2021): h = W0·x + (α/r)·B·(A·x), A ∈ R^{r×n} Kaiming-uniform, B ∈ R^{m×r} = 0.

ΔW = (α/r)·B·A is zero at initialisation. Both factors are Euclidean; they are kept in fp32
when the base layer is bf16/fp16. Parameter names (``lora_A``, ``lora_B``) follow PEFT so
that PEFT checkpoints map onto them one to one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bayeshead.adapters._lowrank import LowRankAdapter, kaiming_uniform_
from bayeshead.adapters.config import LoRAConfig
from bayeshead.manifolds.geometry import Geometry
from bayeshead.manifolds.stable_rank import stable_rank_lowrank
from bayeshead.registry import ADAPTERS

__all__ = ["LoRALinear"]


@ADAPTERS.register("lora", config=LoRAConfig)
class LoRALinear(LowRankAdapter):
    """LoRA around an ``nn.Linear`` or ``Conv1D``: ΔW = (α/r)·B·A, B = 0 at init."""

    def __init__(self, base_layer: nn.Module, config: LoRAConfig | None = None) -> None:
        super().__init__(base_layer, config or LoRAConfig())
        kw = self._factor_kwargs
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, **kw))
        kaiming_uniform_(self.lora_A)

    def _delta_path(self, x: Tensor) -> Tensor:
        return (x @ self.lora_A.T) @ self.lora_B.T

    def _delta(self) -> Tensor:
        return self.lora_B @ self.lora_A

    def stable_rank(self) -> float:
        """sr(B·A) from the r×r core R_B·R_Aᵀ (QR of B and Aᵀ)."""
        return stable_rank_lowrank(self.lora_B, self.lora_A)

    def parameter_geometry(self) -> dict[str, Geometry]:
        return {"lora_A": "euclidean", "lora_B": "euclidean"}
