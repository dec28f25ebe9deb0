"""Manifold geometry and optimizers (installed as ``bayeshead.manifolds``).

Knows nothing about adapters: it tags parameters by geometry and turns tagged parameter
groups into one ``torch.optim.Optimizer``.
"""

from bayeshead.manifolds.geometry import GEOMETRIES, Geometry, ParamGroup, geometry_of, group_by_geometry

__all__ = ["GEOMETRIES", "Geometry", "ParamGroup", "geometry_of", "group_by_geometry"]
