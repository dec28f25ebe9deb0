"""The :class:`Backbone` interface: text in, one feature vector per example out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

__all__ = ["Backbone"]


class Backbone(nn.Module, ABC):
    """Produces features (B, d) from a tokenized batch. Adapters live inside ``model``."""

    model: nn.Module

    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """d, the width of the features."""

    @abstractmethod
    def tokenize(self, texts: Sequence[str], text_pair: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Tokenize a list of strings (or, with ``text_pair``, of pairs ``(texts[i], text_pair[i])``)
        into a padded batch (``input_ids``, ``attention_mask``, ...)."""

    @abstractmethod
    def features(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Pooled features (B, d) for a tokenized batch: fp32 (fp64 for an fp64 backbone), never half precision."""

    def option_features(self, batch: Mapping[str, Tensor], counts: Tensor) -> Tensor:
        """Features (N, d') of the N option sequences of a tokenized option batch (multiple choice;
        ``counts`` (Q,) options per question); the features themselves unless a backbone adds
        per-option columns (``option_feature_dim``)."""
        return self.features(batch)

    @property
    def option_feature_dim(self) -> int:
        """The width of :meth:`option_features` (``feature_dim`` unless the backbone adds columns)."""
        return self.feature_dim

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self.features(batch)
