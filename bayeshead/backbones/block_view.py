"""Views of a decoder's base model that run only a contiguous range of its transformer blocks.

A decoder base model (``LlamaModel``, ``Qwen2Model``, ``Gemma3TextModel``, ...) embeds the tokens
(``embed_tokens``; Gemma-3 scales the embeddings inside that module), runs ``layers`` and applies
the final ``norm``. Its ``forward`` accepts ``inputs_embeds`` in place of token ids and builds the
rotary position embeddings and the attention masks (causal, and sliding-window for the layers whose
``config.layer_types`` entry says so) from ``position_ids`` and ``attention_mask``.

:func:`block_view` returns a shallow copy of the base model whose ``layers`` hold blocks
``start .. stop-1`` (the very same module objects, so adapters and weights are shared, never
copied) and whose config has ``num_hidden_layers`` and ``layer_types`` cut to that range, so block
``i`` of the view gets the mask and rotary table of block ``start + i`` of the original. Then

* ``block_view(base, 0, s, final_norm=False)(input_ids=...)`` gives the states entering block s;
* ``block_view(base, s, n)(inputs_embeds=those states, ...)`` gives the final-normed states of the
  whole model, i.e. the full forward.

The view is not registered as a submodule of anything, so it adds no parameters or state-dict keys.
"""

from __future__ import annotations

import copy

from torch import nn

from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["decoder_base", "num_decoder_blocks", "block_view"]

_NEEDED = ("embed_tokens", "layers", "norm")


def decoder_base(model: nn.Module) -> nn.Module:
    """The decoder base model inside ``model`` (a causal LM's ``base_model``, or the model itself):
    a module with ``embed_tokens``, ``layers`` (a ``ModuleList``) and ``norm``, whose forward takes
    ``inputs_embeds``. Refuses other architectures with what is missing."""
    base = getattr(model, "base_model", model)
    missing = [name for name in _NEEDED if not isinstance(getattr(base, name, None), nn.Module)]
    if not missing and not isinstance(base.layers, nn.ModuleList):
        missing = ["layers (as an nn.ModuleList)"]
    if missing:
        raise InputTypeError(
            f"cached prefix states need a decoder base model with embed_tokens, layers and norm "
            f"(Llama, Qwen2, Gemma-3, Mistral, ...), but {type(base).__name__} lacks {missing}. "
            "Use a decoder backbone, or set backbone.cache_prefix=false."
        )
    return base


def num_decoder_blocks(model: nn.Module) -> int:
    """n, the number of transformer blocks of the decoder inside ``model``."""
    return len(decoder_base(model).layers)


def _view_config(config, start: int, stop: int):
    """A shallow copy of ``config`` describing blocks ``start .. stop-1`` only."""
    view = copy.copy(config)
    view.num_hidden_layers = stop - start
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        view.layer_types = list(layer_types)[start:stop]
    return view


def block_view(base: nn.Module, start: int, stop: int, *, final_norm: bool = True) -> nn.Module:
    """A view of decoder base model ``base`` running blocks ``start .. stop-1`` (0 <= start <= stop <= n),
    followed by the final norm when ``final_norm`` (else the raw residual stream)."""
    base = decoder_base(base)
    n = len(base.layers)
    if not 0 <= start <= stop <= n:
        raise UserInputError(f"block range [{start}, {stop}) is not inside the model's {n} blocks; expected 0 <= start <= stop <= {n}")
    view = copy.copy(base)  # a new object sharing every submodule, parameter and buffer
    view._modules = dict(base._modules)
    view._parameters = dict(base._parameters)
    view._buffers = dict(base._buffers)
    view._modules["layers"] = nn.ModuleList(list(base.layers)[start:stop])
    if not final_norm:
        view._modules["norm"] = nn.Identity()
    view.config = _view_config(base.config, start, stop)
    return view
