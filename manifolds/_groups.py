"""Turning :class:`~bayeshead.manifolds.geometry.ParamGroup` lists into torch param groups."""

from __future__ import annotations

from typing import Any

from torch import nn

from bayeshead.errors import UserInputError
from bayeshead.manifolds.geometry import GEOMETRIES, ParamGroup, geometry_of

__all__ = ["torch_groups", "param_geometry"]


def torch_groups(groups: list[ParamGroup], *, stiefel_lr: float | None = None) -> list[dict[str, Any]]:
    """Copy ``groups`` for a torch optimizer: drop ``names``, keep the ``geometry`` tag, and give
    Stiefel groups ``stiefel_lr`` unless they already carry their own ``lr``."""
    out: list[dict[str, Any]] = []
    for group in groups:
        tag = group.get("geometry")
        if tag is not None and tag not in GEOMETRIES:
            raise UserInputError(f"parameter group has geometry {tag!r}; expected one of {GEOMETRIES}")
        plain = {k: v for k, v in group.items() if k != "names"}
        plain["params"] = list(group["params"])
        plain.setdefault("geometry", None)
        if tag == "stiefel" and stiefel_lr is not None and "lr" not in group:
            plain["lr"] = stiefel_lr
        out.append(plain)
    return out


def param_geometry(group: dict[str, Any], param: nn.Parameter) -> str:
    """The group's tag, or the parameter's own (:func:`geometry_of`) when the group has none."""
    return group.get("geometry") or geometry_of(param)
