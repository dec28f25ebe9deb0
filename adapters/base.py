"""The :class:`Adapter` interface: a trainable low-rank update around a frozen base layer.

An adapter wraps ``base_layer`` (``nn.Linear`` or GPT-2 ``Conv1D``) and computes
``base_layer(x) + Δ(x)``. It declares the geometry of each of its parameters
(``"euclidean"`` or ``"stiefel"``) through :meth:`parameter_geometry`, so that the optimizer
factories of :mod:`bayeshead.manifolds` can pick the right update rule, and may ask for some
parameters to train at a multiple of the learning rate (:meth:`parameter_lr_scale`); it never
builds an optimizer itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from bayeshead.manifolds.geometry import Geometry

__all__ = ["Adapter"]


class Adapter(nn.Module, ABC):
    """Base class of adapter modules (LoRA, PoLAR, ...)."""

    base_layer: nn.Module

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """base_layer(x) + the adapter's update (skipped while merged)."""

    @abstractmethod
    def delta_weight(self) -> Tensor:
        """ΔW in the (out, in) layout of ``nn.Linear.weight``."""

    @abstractmethod
    def merge(self) -> None:
        """Fold ΔW into the base weight (forward then skips the low-rank path)."""

    @abstractmethod
    def unmerge(self) -> None:
        """Undo :meth:`merge`."""

    @abstractmethod
    def parameter_geometry(self) -> dict[str, Geometry]:
        """``{parameter name (relative to this module): "euclidean" | "stiefel"}`` for every
        trainable parameter of the adapter."""

    def parameter_lr_scale(self) -> dict[str, float]:
        """``{parameter name: factor}``: parameters trained at ``factor`` times their group's
        learning rate (the optimizer's ``lr``, or ``stiefel_lr`` for Stiefel factors), as LoRA+
        (Hayou et al. 2024) trains B faster than A. Parameters not named keep factor 1."""
        return {}
