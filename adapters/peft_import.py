"""Import a PEFT LoRA adapter directory into bayeshead :class:`LoRALinear` modules.

A PEFT LoRA directory holds ``adapter_config.json`` (``r``, ``lora_alpha``,
``target_modules``, …) and ``adapter_model.safetensors`` with keys such as
``base_model.model.<module name>.lora_A.weight`` (r×n) and ``….lora_B.weight`` (m×r);
PEFT's ΔW = (lora_alpha/r)·B·A (or lora_alpha/√r with ``use_rslora``), the same layout as
:class:`~bayeshead.adapters.lora.LoRALinear` (Hu et al. 2021), also for GPT-2 ``Conv1D``.
Only plain LoRA is supported: DoRA, per-module rank/alpha patterns, trained biases and
``modules_to_save`` are refused with an explanation. Pickle (``adapter_model.bin``) is not read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from bayeshead.adapters._lowrank import linear_shape
from bayeshead.adapters.config import LoRAConfig
from bayeshead.adapters.inject import inject_adapters
from bayeshead.adapters.modules import adapter_modules
from bayeshead.errors import UserInputError

__all__ = ["load_peft_lora", "read_peft_config"]

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")


def read_peft_config(directory: str | Path) -> dict[str, Any]:
    """Read and check ``adapter_config.json``; refuse what plain LoRA cannot represent."""
    path = Path(directory) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found: expected a PEFT adapter directory")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        problems.append(f"peft_type={cfg.get('peft_type')!r} (only LORA is supported)")
    if cfg.get("use_dora"):
        problems.append("use_dora=true (DoRA is not LoRA)")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        problems.append("rank_pattern/alpha_pattern (per-module ranks) are set")
    if cfg.get("bias", "none") != "none":
        problems.append(f"bias={cfg.get('bias')!r} (trained biases are not imported)")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save={cfg.get('modules_to_save')!r} (full-module copies)")
    if cfg.get("layers_to_transform") is not None:
        problems.append("layers_to_transform is set")
    if problems:
        raise UserInputError(
            f"cannot import the PEFT adapter in {str(directory)!r} as plain LoRA: "
            + "; ".join(problems)
            + ". Merge it with PEFT (merge_and_unload) and load the merged model instead."
        )
    return cfg


def _resolve(model: nn.Module, name: str) -> str | None:
    """Map a PEFT module name onto ``model``: as is, or with/without its base-model prefix."""
    names = {n for n, _ in model.named_modules()}
    prefix = getattr(model, "base_model_prefix", "") or ""
    options = [name]
    if prefix:
        options += [name[len(prefix) + 1 :] if name.startswith(prefix + ".") else None, f"{prefix}.{name}"]
    for option in options:
        if option and option in names:
            return option
    return None


def load_peft_lora(model: nn.Module, directory: str | Path) -> list[str]:
    """Inject :class:`LoRALinear` modules for the layers a PEFT LoRA directory adapts and load
    its weights; returns the adapted module names. Raises ``ValueError`` naming every module
    that is missing from ``model`` and every shape mismatch."""
    directory = Path(directory)
    cfg = read_peft_config(directory)
    weights_path = directory / "adapter_model.safetensors"
    if not weights_path.is_file():
        raise FileNotFoundError(
            f"{str(weights_path)!r} not found; only safetensors PEFT checkpoints are read "
            "(re-save the adapter with save_pretrained(..., safe_serialization=True))"
        )
    tensors = load_file(str(weights_path))
    by_module: dict[str, dict[str, Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise UserInputError(f"unexpected key {key!r} in {weights_path.name}: not a LoRA A/B weight")
        by_module.setdefault(match["module"], {})[match["which"]] = tensor
    incomplete = [m for m, ab in by_module.items() if set(ab) != {"A", "B"}]
    if incomplete:
        raise UserInputError(f"LoRA weights lack lora_A or lora_B for modules {sorted(incomplete)[:10]}")
    resolved = {m: _resolve(model, m) for m in by_module}
    missing = sorted(m for m, r in resolved.items() if r is None)
    if missing:
        raise UserInputError(
            f"the PEFT adapter adapts modules that {type(model).__name__} does not have: "
            f"{missing[:10]}; load it into the same architecture it was trained on"
        )
    rank = int(cfg["r"])
    alpha = float(cfg.get("lora_alpha", rank))
    if cfg.get("use_rslora"):
        alpha = alpha * math.sqrt(rank)  # rsLoRA scales by α/√r = (α√r)/r
    pattern = "|".join(re.escape(r) for r in sorted(set(resolved.values())))  # type: ignore[arg-type]
    config = LoRAConfig(
        rank=rank, alpha=alpha, dropout=float(cfg.get("lora_dropout", 0.0)), target_modules=pattern
    )
    # check shapes before touching the model
    wrong = []
    for peft_name, name in resolved.items():
        m, n = linear_shape(model.get_submodule(name))  # type: ignore[arg-type]
        a, b = by_module[peft_name]["A"], by_module[peft_name]["B"]
        if tuple(a.shape) != (rank, n) or tuple(b.shape) != (m, rank):
            wrong.append(
                f"{name}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)}, expected "
                f"({rank}, {n}) / ({m}, {rank})"
            )
    if wrong:
        raise UserInputError(
            f"PEFT LoRA shapes do not fit the model (r={rank} from adapter_config.json): "
            + "; ".join(wrong[:10])
            + ". Check that the base model and adapter_config.json match the adapter weights."
        )
    names = inject_adapters(model, config)
    adapters = adapter_modules(model)
    with torch.no_grad():
        for peft_name, name in resolved.items():
            adapter = adapters[name]  # type: ignore[index]
            adapter.lora_A.copy_(by_module[peft_name]["A"].to(adapter.lora_A.dtype))
            adapter.lora_B.copy_(by_module[peft_name]["B"].to(adapter.lora_B.dtype))
    return names
