"""Adapter parameterizations (installed as ``bayeshead.adapters``): LoRA, PoLAR, ..."""

from bayeshead.adapters.base import Adapter
from bayeshead.adapters.config import AdapterConfig, LoRAConfig, PoLARConfig

__all__ = ["Adapter", "AdapterConfig", "LoRAConfig", "PoLARConfig"]
