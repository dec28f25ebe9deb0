"""Manifold geometry and optimizers (installed as ``bayeshead.manifolds``).

Knows nothing about adapters: it tags parameters by geometry and turns tagged parameter
groups into one ``torch.optim.Optimizer`` (``"adamw"``, ``"riemannian_adam"``, ``"landing"``
in :data:`bayeshead.OPTIMIZERS`), and offers Stiefel diagnostics.
"""

from bayeshead.manifolds.geometry import (
    GEOMETRIES,
    Geometry,
    ParamGroup,
    geometry_of,
    group_by_geometry,
)
from bayeshead.manifolds.stable_rank import (
    stable_rank,
    stable_rank_lowrank,
    stable_rank_orthonormal,
)
from bayeshead.manifolds.stiefel import orthogonality_error, random_stiefel

__all__ = [
    "GEOMETRIES",
    "Geometry",
    "ParamGroup",
    "geometry_of",
    "group_by_geometry",
    "orthogonality_error",
    "random_stiefel",
    "stable_rank",
    "stable_rank_lowrank",
    "stable_rank_orthonormal",
]
