"""Parameter geometry tags and grouping of parameters by geometry.

Adapters tag each trainable parameter ``"euclidean"`` or ``"stiefel"`` (a matrix X with
XᵀX = I). Optimizer factories receive :class:`ParamGroup` lists and build one optimizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

from torch import nn

from bayeshead.errors import UserInputError

__all__ = ["Geometry", "GEOMETRIES", "ParamGroup", "group_by_geometry", "geometry_of"]

Geometry = Literal["euclidean", "stiefel"]
GEOMETRIES: tuple[str, ...] = ("euclidean", "stiefel")


class ParamGroup(TypedDict, total=False):
    """A torch optimizer parameter group with a ``geometry`` tag (and optional overrides)."""

    params: list[nn.Parameter]
    names: list[str]
    geometry: Geometry
    lr: float
    weight_decay: float
    lr_scale: float


def geometry_of(param: nn.Parameter) -> Geometry:
    """``"stiefel"`` for a geoopt ManifoldParameter on a Stiefel manifold, else ``"euclidean"``."""
    manifold = getattr(param, "manifold", None)
    if manifold is not None and "stiefel" in type(manifold).__name__.lower():
        return "stiefel"
    return "euclidean"


def group_by_geometry(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    geometry: Mapping[str, str] | None = None,
    **group_options: Any,
) -> list[ParamGroup]:
    """Split trainable parameters into one group per geometry.

    ``geometry`` maps parameter names to tags; parameters it does not name are tagged by
    :func:`geometry_of`. Frozen parameters (``requires_grad=False``) are left out.
    """
    geometry = dict(geometry or {})
    groups: dict[str, ParamGroup] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        tag = geometry.get(name) or geometry_of(param)
        if tag not in GEOMETRIES:
            raise UserInputError(f"parameter {name!r} has geometry {tag!r}; expected one of {GEOMETRIES}")
        group = groups.setdefault(tag, {"params": [], "names": [], "geometry": tag, **group_options})  # type: ignore[misc]
        group["params"].append(param)
        group["names"].append(name)
    return [groups[tag] for tag in GEOMETRIES if tag in groups]
