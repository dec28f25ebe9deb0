"""``single``: one model, whose head carries all of the uncertainty (the default method).

Training is the trainer's loop (alternating or joint) and the head's post-hoc stage; a
prediction is one backbone pass and the head's predictive.
"""

from __future__ import annotations

from typing import Literal

from bayeshead.methods.base import MethodConfig, UncertaintyMethod
from bayeshead.registry import METHODS

__all__ = ["SingleModel", "SingleModelConfig"]


class SingleModelConfig(MethodConfig):
    kind: Literal["single"] = "single"


@METHODS.register("single", config=SingleModelConfig)
class SingleModel(UncertaintyMethod):
    """One model: backbone (+ adapters) + head, one backbone pass per prediction."""

    Config = SingleModelConfig
