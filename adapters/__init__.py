"""Adapter parameterizations (installed as ``bayeshead.adapters``): LoRA, PoLAR, ...

``inject_adapters(model, config)`` puts them into a Hugging Face model; ``export_merged``
writes a plain ``transformers`` checkpoint; ``load_peft_lora`` imports a PEFT LoRA adapter.
"""

from bayeshead.adapters.base import Adapter
from bayeshead.adapters.config import AdapterConfig, LoRAConfig, PoLARConfig
from bayeshead.adapters.export import export_merged
from bayeshead.adapters.inject import inject_adapters, linear_module_names, output_head_names
from bayeshead.adapters.lora import LoRALinear
from bayeshead.adapters.modules import (
    adapter_geometry,
    adapter_modules,
    adapter_state_dict,
    load_adapter_state_dict,
    merge_adapters,
    unload_adapters,
    unmerge_adapters,
)
from bayeshead.adapters.peft_import import load_peft_lora, read_peft_config
from bayeshead.adapters.polar import PoLARLinear

__all__ = [
    "Adapter",
    "AdapterConfig",
    "LoRAConfig",
    "PoLARConfig",
    "LoRALinear",
    "PoLARLinear",
    "inject_adapters",
    "linear_module_names",
    "output_head_names",
    "adapter_modules",
    "adapter_geometry",
    "adapter_state_dict",
    "load_adapter_state_dict",
    "merge_adapters",
    "unmerge_adapters",
    "unload_adapters",
    "export_merged",
    "load_peft_lora",
    "read_peft_config",
]
