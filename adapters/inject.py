"""Putting adapters into a model: :func:`inject_adapters`.

Target selection (as in PEFT): a list of name suffixes (``"query"`` matches
``encoder.layer.0.attention.self.query``), a regular expression matched in full against the
module name, or ``"all-linear"`` — every ``nn.Linear``/``Conv1D`` except the output head
(a module named ``lm_head`` or the module ``model.get_output_embeddings()`` returns) unless
``include_output_head``. Only linear layers are adapted. Every parameter that is not an
adapter parameter is frozen.

Block selection (PEFT's ``layers_to_transform``, and ``top_layers``): a target is kept only when
the first ``layers.<i>.``/``layer.<i>.``/``h.<i>.``/``blocks.<i>.``/``block.<i>.`` segment of its
name has an index in the chosen set (:func:`layer_index`); targets outside any block (an output
head, a pooler) are dropped. The model's block count is the largest index found plus one.
"""

from __future__ import annotations

import re

from torch import nn

from bayeshead.adapters._lowrank import is_linear_like
from bayeshead.adapters.base import Adapter
from bayeshead.adapters.config import AdapterConfig
from bayeshead.errors import UserInputError
from bayeshead.registry import ADAPTERS

__all__ = [
    "check_layer_options",
    "inject_adapters",
    "layer_index",
    "linear_module_names",
    "num_blocks",
    "output_head_names",
    "selected_layers",
]

_MAX_LISTED = 40
_BLOCK = re.compile(r"(?:^|.*?\.)(?:layers|layer|h|blocks|block)\.(?P<idx>\d+)\.")


def layer_index(name: str) -> int | None:
    """The transformer block a module belongs to: the number after the first ``layers.``,
    ``layer.``, ``h.``, ``blocks.`` or ``block.`` segment of its name (``None`` outside blocks)."""
    match = _BLOCK.match(name)
    return int(match.group("idx")) if match else None


def num_blocks(model: nn.Module) -> int:
    """The number of transformer blocks: the largest block index among the module names + 1."""
    found = [i for i in (layer_index(f"{name}.") for name, _ in model.named_modules()) if i is not None]
    return max(found) + 1 if found else 0


def check_layer_options(config: AdapterConfig) -> None:
    """Refuse layer options that cannot mean anything, whatever the model (config-level checks)."""
    chosen = getattr(config, "layers_to_transform", None)
    top = getattr(config, "top_layers", None)
    if chosen is not None and top is not None:
        raise UserInputError(
            f"layers_to_transform={chosen!r} and top_layers={top!r} are both set; choose one "
            "(top_layers=k is layers_to_transform=[n-k, ..., n-1] for a model with n blocks)"
        )
    indices = [chosen] if isinstance(chosen, int) else list(chosen or [])
    if chosen is not None and not indices:
        raise UserInputError(
            "layers_to_transform=[] selects no block; list block indices (0 = the first block) or "
            "set it to null to adapt every block"
        )
    negative = [i for i in indices if i < 0]
    if negative:
        raise UserInputError(
            f"layers_to_transform has negative block indices {negative}; blocks count from 0 "
            "(the first block); to adapt the last k blocks use top_layers=k"
        )
    if top is not None and top < 1:
        raise UserInputError(f"top_layers must be >= 1, got {top}; for k = 0 leave the adapter out (adapter: null)")
    if isinstance(config.target_modules, str) and config.target_modules != "all-linear" and (
        chosen is not None or top is not None
    ):
        raise UserInputError(
            f"layers_to_transform/top_layers need target_modules as a list of name suffixes or "
            f'"all-linear", got the regular expression {config.target_modules!r} (as in PEFT); put the '
            "block indices into the regex instead, or pass suffixes"
        )


def selected_layers(model: nn.Module, config: AdapterConfig) -> set[int] | None:
    """The block indices ``config`` adapts in ``model`` (None: every block); refuses indices
    beyond the model's blocks and a ``top_layers`` larger than their number."""
    check_layer_options(config)
    chosen = getattr(config, "layers_to_transform", None)
    top = getattr(config, "top_layers", None)
    if chosen is None and top is None:
        return None
    n = num_blocks(model)
    if n == 0:
        raise UserInputError(
            f"layers_to_transform/top_layers were given but {type(model).__name__} has no module named "
            "like '...layers.<i>...', '...layer.<i>...', '...h.<i>...' or '...blocks.<i>...'; "
            "leave both unset for this model"
        )
    if top is not None:
        if top > n:
            raise UserInputError(
                f"top_layers={top} but {type(model).__name__} has {n} blocks; choose 1 <= top_layers <= {n}"
            )
        return set(range(n - top, n))
    indices = {chosen} if isinstance(chosen, int) else set(chosen)
    beyond = sorted(i for i in indices if i >= n)
    if beyond:
        raise UserInputError(
            f"layers_to_transform has block indices {beyond} but {type(model).__name__} has {n} blocks "
            f"(indices 0..{n - 1}); drop them or use top_layers"
        )
    return indices


def output_head_names(model: nn.Module) -> set[str]:
    """Names of the output head: modules called ``lm_head`` and ``get_output_embeddings()``."""
    names = {name for name, _ in model.named_modules() if name.split(".")[-1] == "lm_head"}
    getter = getattr(model, "get_output_embeddings", None)
    head = None
    if callable(getter):
        try:
            head = getter()
        except (NotImplementedError, AttributeError):
            head = None
    if isinstance(head, nn.Module):
        names |= {name for name, module in model.named_modules() if module is head}
    return names


def linear_module_names(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear``/``Conv1D`` modules that are not inside an adapter."""
    inside = _adapter_prefixes(model)
    return [
        name
        for name, module in model.named_modules()
        if is_linear_like(module) and not any(name.startswith(p) for p in inside)
    ]


def _adapter_prefixes(model: nn.Module) -> list[str]:
    return [f"{name}." for name, module in model.named_modules() if isinstance(module, Adapter)]


def _matches(name: str, targets: list[str] | str) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith(f".{t}") for t in targets)


def _short_list(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = f", … ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return shown + more


def _select(model: nn.Module, config: AdapterConfig) -> list[str]:
    candidates = linear_module_names(model)
    layers = selected_layers(model, config)
    if layers is not None:  # keep only the chosen blocks' layers
        candidates = [name for name in candidates if layer_index(name) in layers]
    targets = config.target_modules
    if targets == "all-linear":
        skip = set() if config.include_output_head else output_head_names(model)
        chosen = [name for name in candidates if name not in skip]
    else:
        if isinstance(targets, str):
            try:
                re.compile(targets)
            except re.error as err:
                raise UserInputError(
                    f"target_modules {targets!r} is not a valid regular expression ({err}); pass a "
                    'list of name suffixes, a regex matched in full, or "all-linear"'
                ) from None
        chosen = [name for name in candidates if _matches(name, targets)]
    if chosen:
        return sorted(chosen)
    non_linear = [
        f"{name} ({type(module).__name__})"
        for name, module in model.named_modules()
        if name and not is_linear_like(module) and _matches(name, targets) and targets != "all-linear"
    ]
    hint = (
        f" These matched but are not nn.Linear/Conv1D: {_short_list(non_linear)}." if non_linear else ""
    )
    if layers is not None:
        hint += f" Only blocks {sorted(layers)} were searched (layers_to_transform/top_layers)."
    raise UserInputError(
        f"target_modules={targets!r} matched no linear layer of {type(model).__name__}.{hint} "
        f"Linear layers that can be adapted: {_short_list(candidates) or '(none)'}. "
        'Pass name suffixes such as ["q_proj", "v_proj"], a regex, or "all-linear".'
    )


def inject_adapters(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Replace the targeted linear layers of ``model`` by ``ADAPTERS.get(config.kind)``
    modules (in place), freeze every other parameter and return the adapted names (sorted).

    Raises ``ValueError`` when nothing matches (listing candidate layers), when ``model``
    already holds adapters, or when the rank exceeds a layer's min(out, in)."""
    existing = [p[:-1] for p in _adapter_prefixes(model)]
    if existing:
        raise UserInputError(
            f"the model already holds adapters at {_short_list(existing)}; inject once, or call "
            "bayeshead.adapters.unload_adapters(model) first"
        )
    adapter_cls = ADAPTERS.get(config.kind)
    names = _select(model, config)
    for param in model.parameters():
        param.requires_grad_(False)
    built: dict[str, nn.Module] = {}
    for name in names:
        layer = model.get_submodule(name)
        try:
            built[name] = adapter_cls(layer, config)
        except ValueError as err:
            raise UserInputError(f"cannot adapt {name!r}: {err}") from None
    for name, adapter in built.items():  # replace only once every layer was accepted
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, adapter)
        for pname, param in adapter.named_parameters():
            if not pname.startswith("base_layer."):
                param.requires_grad_(True)
    return names
