"""Uncertainty heads. Import a head's module (or use ``HEADS.get(name)``) to get its class."""

from bayeshead.heads.base import HeadConfig, UncertaintyHead

__all__ = ["HeadConfig", "UncertaintyHead"]
