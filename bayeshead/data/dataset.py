""":class:`TextDataset`: texts with integer class labels, and seeded mini-batching."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["TextDataset"]


@dataclass
class TextDataset:
    """``texts[i]`` has class ``labels[i]`` in [0, C). ``class_names`` name the classes."""

    texts: list[str]
    labels: Tensor
    class_names: list[str] = field(default_factory=list)
    name: str = "data"

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        if not isinstance(self.labels, Tensor):
            self.labels = torch.as_tensor(self.labels)
        self.labels = self.labels.long().flatten()
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels")
        bad = [i for i, t in enumerate(self.texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{self.name}: texts must be strings; rows {bad[:10]} are not")
        if len(self.labels) and self.labels.min() < 0:
            raise ValueError(f"{self.name}: labels must be >= 0, got {int(self.labels.min())}")
        if not self.class_names:
            n = int(self.labels.max()) + 1 if len(self.labels) else 0
            self.class_names = [str(c) for c in range(n)]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: Sequence[int] | Tensor, name: str | None = None) -> TextDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TextDataset(
            texts=[self.texts[i] for i in idx.tolist()],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            name=name or self.name,
        )

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[list[str], Tensor]]:
        """Yield ``(texts, labels)`` mini-batches; shuffled with ``generator`` when asked."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            idx = order[start : start + batch_size].tolist()
            yield [self.texts[i] for i in idx], self.labels[idx]
