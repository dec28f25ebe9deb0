"""Adapter parameterizations (installed as ``bayeshead.adapters``): LoRA, PoLAR, ...

``inject_adapters(model, config)`` puts them into a Hugging Face model; ``export_merged``
writes a plain ``transformers`` checkpoint; ``load_peft_lora`` imports a PEFT LoRA adapter.
``bayesianize_lora`` turns LoRA modules into Bayesian ones (BLoB); ``tfb_factors``/``tfb_std``
are the training-free Bayesianization (TFB) of a trained LoRA.
"""

from bayeshead.adapters.base import Adapter
from bayeshead.adapters.bayesian_lora import (
    BayesianLoRALinear,
    bayesian_lora_kl,
    bayesian_lora_modules,
    bayesianize_lora,
    lora_sampling,
)
from bayeshead.adapters.config import AdapterConfig, LoRAConfig, PoLARConfig
from bayeshead.adapters.export import export_merged
from bayeshead.adapters.inject import inject_adapters, linear_module_names, output_head_names
from bayeshead.adapters.lora import LoRALinear
from bayeshead.adapters.merged import NotMergeableError, is_merged, merged_adapters
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
from bayeshead.adapters.tfb import tfb_factors, tfb_std

__all__ = [
    "Adapter",
    "AdapterConfig",
    "LoRAConfig",
    "PoLARConfig",
    "LoRALinear",
    "PoLARLinear",
    "BayesianLoRALinear",
    "bayesianize_lora",
    "bayesian_lora_modules",
    "lora_sampling",
    "bayesian_lora_kl",
    "tfb_factors",
    "tfb_std",
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
    "merged_adapters",
    "is_merged",
    "NotMergeableError",
    "load_peft_lora",
    "read_peft_config",
]
