"""Set a head's class weights to given rows, e.g. the answer-token rows of a causal LM's head.

With rows W (C, d) and bias b (C,) the head's (mean) logits become

    z_c = w_cᵀ φ + b_c,

so rows taken from an LM head (:func:`bayeshead.backbones.answer_head.answer_head_rows`) make a
C-way head on ``last_token`` features start at the LM's answer-token logits (BLoB, Wang et al.,
NeurIPS 2024; Laplace-LoRA, Yang et al., ICLR 2024).

Supported heads:

* heads with ``init_from_linear`` (the VBLL heads): posterior means w̄_c = w_c (covariances kept;
  the generative VBLL head sets m_c = Σ·w_c, see its ``init_from_linear``);
* heads on an ``nn.Linear`` named ``linear`` (deterministic, temperature, mc_dropout, laplace,
  laplace_adapters): the linear layer's weight and bias;
* ensembles of ``nn.Linear`` members (``members``, the ensemble head): every member.

Without a given bias a head's bias is set to zero, so the logits are exactly w_cᵀφ.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["init_head_from_rows", "SUPPORTED_HEADS"]

SUPPORTED_HEADS = (
    "heads with init_from_linear (vbll_classification, vbll_regression, vbll_generative_classification), "
    "heads on an nn.Linear `linear` (deterministic, temperature, mc_dropout, laplace, laplace_adapters), "
    "ensembles of nn.Linear `members` (ensemble)"
)


def _head_kind(head: nn.Module) -> str:
    kind = getattr(getattr(head, "config", None), "kind", None)
    return f"{kind!r} ({type(head).__name__})" if kind else type(head).__name__


def _check_rows(head: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
    """(C, d) = (num_outputs, in_features) rows and a (C,) bias, finite floats."""
    if not isinstance(weight, Tensor) or (bias is not None and not isinstance(bias, Tensor)):
        raise InputTypeError(
            f"init_head_from_rows: weight must be a (C, d) tensor and bias a (C,) tensor or None, got "
            f"{type(weight).__name__} and {type(bias).__name__}"
        )
    expected = (int(head.num_outputs), int(head.in_features))
    if tuple(weight.shape) != expected:
        raise UserInputError(
            f"init_head_from_rows: the {_head_kind(head)} head has {expected[0]} outputs and {expected[1]} "
            f"input features, so it expects rows of shape {expected}; got {tuple(weight.shape)}. Give one row "
            "per class (e.g. one answer per class) from a backbone of the head's feature width."
        )
    if bias is not None and tuple(bias.shape) != (expected[0],):
        raise UserInputError(
            f"init_head_from_rows: expected a bias of shape ({expected[0]},) (one per class), got {tuple(bias.shape)}"
        )
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and (not value.is_floating_point() or not torch.isfinite(value).all()):
            raise UserInputError(
                f"init_head_from_rows: the {name} must be finite floating-point values (got {value.dtype})"
            )


@torch.no_grad()
def _set_linear(layer: nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
    """W ← weight, b ← bias (or 0), cast to the layer's dtype and device."""
    layer.weight.copy_(weight.to(device=layer.weight.device, dtype=layer.weight.dtype))
    if layer.bias is None:
        if bias is not None and bool((bias != 0).any()):
            raise UserInputError(
                "init_head_from_rows: got a non-zero bias but the head's linear layer has none; "
                "set bias=true in the head config (or drop the bias)"
            )
        return
    if bias is None:
        layer.bias.zero_()
    else:
        layer.bias.copy_(bias.to(device=layer.bias.device, dtype=layer.bias.dtype))


def _forget_posterior(head: nn.Module) -> None:
    """A posterior fitted at the old weights no longer matches: mark it unfitted."""
    fitted = getattr(head, "fitted", None)
    if isinstance(fitted, Tensor) and fitted.dtype == torch.bool:
        fitted.fill_(False)
    if getattr(head, "laplace", None) is not None:
        head.laplace = None


def _init_from_linear(head: Any, weight: Tensor, bias: Tensor | None) -> None:
    """Heads with ``init_from_linear``: cast to their dtype/device; a zero bias when none is given."""
    ref = next(iter(head.parameters()), weight)
    weight = weight.to(device=ref.device, dtype=ref.dtype)
    own_bias = getattr(head, "bias", None)
    if bias is None and isinstance(own_bias, Tensor):
        bias = torch.zeros_like(own_bias)
    if bias is not None:
        bias = bias.to(device=ref.device, dtype=ref.dtype)
    head.init_from_linear(weight, bias)


def init_head_from_rows(head: Any, weight: Tensor, bias: Tensor | None = None) -> Any:
    """Set ``head``'s class weights to the rows ``weight`` (C, d) and its bias to ``bias`` (C,)
    (zero when None and the head has a bias), so its (mean) logits are z_c = w_cᵀφ + b_c.

    Raises ``TypeError`` for a head kind without class weight rows, ``ValueError`` on shape
    mismatches. Returns ``head``."""
    if not (hasattr(head, "num_outputs") and hasattr(head, "in_features")):
        raise InputTypeError(
            f"init_head_from_rows: expected an UncertaintyHead (with num_outputs and in_features), "
            f"got {type(head).__name__}; supported: {SUPPORTED_HEADS}"
        )
    _check_rows(head, weight, bias)
    weight = weight.detach()
    bias = None if bias is None else bias.detach()
    if callable(getattr(head, "init_from_linear", None)):
        _init_from_linear(head, weight, bias)
    elif isinstance(getattr(head, "linear", None), nn.Linear):
        _set_linear(head.linear, weight, bias)
    elif isinstance(getattr(head, "members", None), nn.ModuleList) and all(
        isinstance(m, nn.Linear) for m in head.members
    ):
        for member in head.members:
            _set_linear(member, weight, bias)
    else:
        raise InputTypeError(
            f"init_head_from_rows: the {_head_kind(head)} head has no class weight rows to set. "
            f"Supported: {SUPPORTED_HEADS}. Use one of those heads, or give this head an "
            "init_from_linear(weight, bias) method."
        )
    _forget_posterior(head)
    return head
