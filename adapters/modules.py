"""Operations on a model that holds adapters: list, merge/unmerge, unload, and the adapter
parameters as a flat state dict (names relative to the model), used by save/load."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bayeshead.adapters.base import Adapter
from bayeshead.errors import UserInputError

__all__ = [
    "adapter_modules",
    "adapter_state_dict",
    "load_adapter_state_dict",
    "merge_adapters",
    "unmerge_adapters",
    "unload_adapters",
    "adapter_geometry",
]


def adapter_modules(model: nn.Module) -> dict[str, Adapter]:
    """``{module name: adapter}`` for every adapter in ``model`` (in module order)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, Adapter)}


def _own_parameters(adapter: Adapter) -> dict[str, nn.Parameter]:
    return {n: p for n, p in adapter.named_parameters() if not n.startswith("base_layer.")}


def adapter_geometry(model: nn.Module) -> dict[str, str]:
    """``{parameter name relative to model: "euclidean" | "stiefel"}`` for every adapter
    parameter — the ``geometry`` argument of ``group_by_geometry``."""
    out: dict[str, str] = {}
    for name, adapter in adapter_modules(model).items():
        for pname, tag in adapter.parameter_geometry().items():
            out[f"{name}.{pname}" if name else pname] = tag
    return out


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only the adapter parameters (detached), named relative to ``model``
    (e.g. ``encoder.layer.0.attention.self.query.U``)."""
    out: dict[str, Tensor] = {}
    for name, adapter in adapter_modules(model).items():
        for pname, param in _own_parameters(adapter).items():
            out[f"{name}.{pname}" if name else pname] = param.detach()
    return out


@torch.no_grad()
def load_adapter_state_dict(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy ``state`` (as produced by :func:`adapter_state_dict`) into the adapters of
    ``model``. Every key must match, with the same shape; merged adapters are refused."""
    expected: dict[str, nn.Parameter] = {}
    for name, adapter in adapter_modules(model).items():
        if adapter.merged:
            raise UserInputError(f"adapter {name!r} is merged; call unmerge_adapters(model) before loading")
        for pname, param in _own_parameters(adapter).items():
            expected[f"{name}.{pname}" if name else pname] = param
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: got {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        raise UserInputError(
            "adapter state does not fit the model's adapters: "
            f"missing {missing[:10]}, unexpected {unexpected[:10]}, shape mismatches {wrong[:10]}. "
            "Inject the same adapter kind, rank and target_modules as when it was saved."
        )
    for key, param in expected.items():
        param.copy_(state[key].to(dtype=param.dtype, device=param.device))


def merge_adapters(model: nn.Module) -> None:
    """Fold every adapter's ΔW into its base weight."""
    for adapter in adapter_modules(model).values():
        adapter.merge()


def unmerge_adapters(model: nn.Module) -> None:
    """Undo :func:`merge_adapters`."""
    for adapter in adapter_modules(model).values():
        adapter.unmerge()


def unload_adapters(model: nn.Module, *, merge: bool = True) -> nn.Module:
    """Replace every adapter by its base layer (in place), after folding ΔW into it when
    ``merge`` (otherwise the update is dropped). Returns ``model``, now free of adapters."""
    for name, adapter in list(adapter_modules(model).items()):
        if merge:
            adapter.merge()
        elif adapter.merged:
            adapter.unmerge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, adapter.base_layer)
    return model
