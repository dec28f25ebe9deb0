"""Backbones: produce (B, d) features from tokenized text; they never see heads."""

from bayeshead.backbones.base import Backbone
from bayeshead.backbones.pooling import POOLINGS, pool

__all__ = ["Backbone", "POOLINGS", "pool"]
