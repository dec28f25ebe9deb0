"""Prediction with the adapters folded into the base weights: :func:`merged_adapters`.

Inside ``with merged_adapters(model):`` every unmerged low-rank adapter (LoRA, PoLAR) has
W ← W + ΔW (its own :meth:`~bayeshead.adapters.base.Adapter.merge`), so a forward pass costs
exactly what the base model costs — the ``merge_and_unload`` deployment of PEFT, but reversible.

Exact restore. Undoing a merge by subtraction is not exact: in floating point
(W ⊕ ΔW) ⊖ ΔW ≠ W in general (one rounding per operation, about 2⁻²⁴·|W| per element in
fp32, 2⁻⁸·|W| in bf16). Training after a merged evaluation must continue from the very same
parameters, so the context keeps a copy of every base weight it touches and copies it back on
exit (also when the body raises), then marks the adapter unmerged. After the ``with`` block
every base weight is bit-identical to what it was before.

Tolerance. A merged forward computes x·(W + ΔW)ᵀ instead of x·Wᵀ + x·ΔWᵀ: in fp32 the two
agree to round-off (about 1e-6 relative). For bf16/fp16 base weights the sum is formed in
fp32 and rounded once to the weight dtype (see ``LowRankAdapter.merge``), i.e. each merged
weight is within half a unit in the last place (2⁻⁹ relative for bf16) of W + ΔW; the
unmerged bf16 forward rounds its own products too, so the two predictions differ by the
usual bf16 noise. On the tiny random Llama of tests/test_adapters_merged.py (LoRA on every
linear layer) the largest logit error against the same computation in fp32 was 4.7% of the
largest logit merged and 4.0% unmerged; the test holds the merged error within 2× the
unmerged one.

Refused (:class:`NotMergeableError`), because a merged weight is one fixed matrix:

* an adapter with a truthy ``sampling`` attribute (a Bayesian LoRA drawing its factors);
* an adapter in training mode with an active dropout on its input (call ``model.eval()``);
* a base weight that the model also uses elsewhere (e.g. an adapted ``lm_head`` tied to the
  input embeddings): merging would change the other use as well.

Adapters that are already merged are left as they are, and stay merged after the block.
The context does not switch gradients off; the adapter factors get no gradient while merged,
so it is meant for evaluation (wrap the body in ``torch.no_grad()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from bayeshead.adapters.base import Adapter
from bayeshead.adapters.modules import adapter_modules
from bayeshead.errors import UserInputError

__all__ = ["merged_adapters", "is_merged", "NotMergeableError", "merge_blockers"]


class NotMergeableError(UserInputError):
    """An adapter cannot be folded into its base weight deterministically."""


def is_merged(model: nn.Module) -> bool:
    """True when ``model`` holds adapters and every one of them is merged (False for a model
    without adapters and for a partly merged one)."""
    adapters = adapter_modules(model)
    return bool(adapters) and all(adapter.merged for adapter in adapters.values())


def _active_dropout(adapter: Adapter) -> float:
    """The largest dropout probability inside ``adapter`` (outside its base layer)."""
    p = 0.0
    for name, module in adapter.named_modules():
        if name.startswith("base_layer") or not isinstance(module, nn.modules.dropout._DropoutNd):
            continue
        p = max(p, float(module.p))
    return p


def _parameter_names(model: nn.Module) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return names


def merge_blockers(model: nn.Module) -> dict[str, str]:
    """``{adapter name: why it cannot be merged}`` over the unmerged adapters of ``model``;
    empty when :func:`merged_adapters` would accept the model."""
    blockers: dict[str, str] = {}
    names = _parameter_names(model)
    for name, adapter in adapter_modules(model).items():
        if adapter.merged:
            continue
        if bool(getattr(adapter, "sampling", False)):
            blockers[name] = (
                "it samples its weights (sampling=True), so no single ΔW stands for it; switch sampling "
                "off (predict with the posterior mean) or predict unmerged"
            )
            continue
        p = _active_dropout(adapter)
        if adapter.training and p > 0:
            blockers[name] = (
                f"it is in training mode with dropout p={p:g} on its input, which a merged weight cannot "
                "reproduce; call model.eval() before merging"
            )
            continue
        weight = getattr(adapter.base_layer, "weight", None)
        if not isinstance(weight, Tensor):
            blockers[name] = f"its base layer {type(adapter.base_layer).__name__} has no weight tensor to fold ΔW into"
            continue
        prefix = f"{name}.base_layer." if name else "base_layer."
        elsewhere = [n for n in names.get(id(weight), []) if not n.startswith(prefix)]
        if elsewhere:
            blockers[name] = (
                f"its base weight is shared with {', '.join(elsewhere)} (tied weights), which merging "
                "would change too; do not adapt tied layers, or untie them first"
            )
    return blockers


@contextmanager
def merged_adapters(model: nn.Module, *, backup_device: torch.device | str | None = None) -> Iterator[nn.Module]:
    """Fold every unmerged adapter of ``model`` into its base weight (W ← W + ΔW) for the
    duration of the block; restore the exact original weights on exit, even on an exception.

    ``backup_device``: where the copies of the original base weights are kept (default: the
    weight's own device; ``"cpu"`` saves accelerator memory at the cost of two transfers).
    Raises :class:`NotMergeableError` before touching anything when an adapter cannot be merged
    (see :func:`merge_blockers`). Yields ``model``.
    """
    blockers = merge_blockers(model)
    if blockers:
        listed = "; ".join(f"{name or '(model)'}: {why}" for name, why in blockers.items())
        raise NotMergeableError(
            f"cannot merge the adapters of {type(model).__name__} for prediction: {listed}. "
            "Predict without merging (leave the merge option off) or fix the adapters named."
        )
    backups: list[tuple[Adapter, Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for adapter in adapter_modules(model).values():
                if adapter.merged:
                    continue
                weight = adapter.base_layer.weight
                copy = weight.detach().to(device=backup_device or weight.device, copy=True)
                backups.append((adapter, weight, copy))
                adapter.merge()
        yield model
    finally:
        with torch.no_grad():
            # Reverse order, so that a weight reached twice ends at its first (original) copy.
            for adapter, weight, copy in reversed(backups):
                weight.copy_(copy)
                adapter.merged = False
