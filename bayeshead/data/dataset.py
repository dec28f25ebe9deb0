""":class:`TextDataset`: texts (or text pairs, or multiple-choice option groups) with class labels
or real-valued targets, and seeded mini-batching into :class:`TextBatch` es.

Targets are either

* ``"classification"``: integer class indices (N,) in [0, C), stored as int64;
* ``"regression"``: real-valued targets (N,) or (N, k), stored as float32 (float64 input keeps
  float64). NaN and infinite targets are refused with the row named.

When ``target_type`` is not given it is inferred from the label dtype: floating point means
regression, anything else (int, bool) classification. An explicit ``target_type`` always wins;
a fractional label under ``"classification"`` is an error, never truncated to a class.

* ``"multiple_choice"``: every example is an option *group*, a tuple of 2 or more option texts
  (question + option, :mod:`bayeshead.tasks.options`), and its label is the index of the correct
  option within its own group; groups of different sizes mix freely. Inferred when the texts are
  tuples. ``class_names`` name the K option positions (K ≥ the largest group), K is the width of
  a per-option head (:mod:`bayeshead.heads.option_base`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from bayeshead.backbones.option_groups import check_option_groups
from bayeshead.errors import InputTypeError, UserInputError

__all__ = ["TextDataset", "TextBatch", "TargetType", "TARGET_TYPES"]

TargetType = Literal["classification", "regression", "multiple_choice"]
TARGET_TYPES: tuple[str, ...] = ("classification", "regression", "multiple_choice")


@dataclass(frozen=True)
class TextBatch:
    """One mini-batch: ``texts``, their ``labels`` (class indices or float targets) and, for
    paired data, the second texts ``text_pair``.

    A single-text batch unpacks as ``texts, labels = batch``. A paired batch refuses that
    unpacking (it would silently drop the second texts): read ``batch.texts``,
    ``batch.text_pair`` and ``batch.labels``."""

    texts: list[str]
    labels: Tensor
    text_pair: list[str] | None = None

    def __iter__(self) -> Iterator[object]:
        if self.text_pair is not None:
            raise InputTypeError(
                "this batch holds text pairs and cannot be unpacked as (texts, labels), which would drop "
                "the second texts; use batch.texts, batch.text_pair and batch.labels instead"
            )
        return iter((self.texts, self.labels))


def _check_strings(values: Sequence[object], what: str, name: str) -> list[str]:
    values = list(values)
    bad = [i for i, t in enumerate(values) if not isinstance(t, str)]
    if bad:
        raise InputTypeError(
            f"{name}: {what} must be strings; rows {bad[:10]} are not (row {bad[0]} is "
            f"{type(values[bad[0]]).__name__} {values[bad[0]]!r})"
        )
    return values  # type: ignore[return-value]


def _first_bad_row(mask: Tensor) -> int:
    """Index of the first example (row) where ``mask`` (N,) or (N, k) is true."""
    rows = mask.reshape(mask.shape[0], -1).any(dim=1)
    return int(rows.nonzero()[0])


@dataclass
class TextDataset:
    """``texts[i]`` (and ``text_pair[i]`` for pairs) with target ``labels[i]``.

    ``target_type`` is ``"classification"`` (``labels`` int64 (N,) in [0, C), ``class_names``
    name the classes) or ``"regression"`` (``labels`` float (N,) or (N, k); ``class_names`` may
    name the k outputs). ``None`` infers it from the dtype of ``labels`` (float: regression).
    """

    texts: list[str] | list[tuple[str, ...]]
    labels: Tensor
    class_names: list[str] = field(default_factory=list)
    name: str = "data"
    target_type: TargetType | None = None
    text_pair: list[str] | None = None

    def __post_init__(self) -> None:
        grouped = not isinstance(self.texts, str) and any(isinstance(t, (tuple, list)) for t in self.texts)
        if grouped:
            self.texts = check_option_groups(self.texts, self.name)  # type: ignore[assignment]
            if self.target_type is None:
                self.target_type = "multiple_choice"
            if self.target_type != "multiple_choice":
                raise UserInputError(
                    f"{self.name}: the texts are option groups (multiple choice) but target_type="
                    f"{self.target_type!r}; use target_type='multiple_choice' or give one string per example"
                )
            if self.text_pair is not None:
                raise UserInputError(f"{self.name}: option groups take no text_pair; put each option's full text in its group")
        else:
            self.texts = _check_strings(self.texts, "texts", self.name)
            if self.target_type == "multiple_choice":
                raise InputTypeError(
                    f"{self.name}: target_type='multiple_choice' needs option groups (a tuple of option texts per "
                    "example), got plain strings"
                )
        if self.text_pair is not None:
            self.text_pair = _check_strings(self.text_pair, "text_pair", self.name)
            if len(self.text_pair) != len(self.texts):
                raise UserInputError(
                    f"{self.name}: {len(self.texts)} texts but {len(self.text_pair)} text_pair entries; "
                    "give one second text per first text"
                )
        labels = self.labels if isinstance(self.labels, Tensor) else torch.as_tensor(self.labels)
        if self.target_type is None:
            self.target_type = "regression" if labels.is_floating_point() else "classification"
        if self.target_type not in TARGET_TYPES:
            raise UserInputError(
                f"{self.name}: target_type must be 'classification' or 'regression', got {self.target_type!r}"
            )
        if labels.is_complex():
            raise InputTypeError(f"{self.name}: labels must be real numbers, got dtype {labels.dtype}")
        if self.target_type == "regression":
            self.labels = self._regression_targets(labels)
        else:
            self.labels = self._class_labels(labels)
        if self.target_type == "multiple_choice":
            self._check_option_labels()
        if len(self.texts) != len(self.labels):
            raise UserInputError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels")

    def _regression_targets(self, labels: Tensor) -> Tensor:
        dtype = torch.float64 if labels.dtype == torch.float64 else torch.float32
        labels = labels.detach().to(dtype)
        if labels.dim() == 0 or labels.dim() > 2:
            raise UserInputError(
                f"{self.name}: regression targets must have shape (N,) or (N, k), got {tuple(labels.shape)}"
            )
        if labels.numel() and not torch.isfinite(labels).all():
            row = _first_bad_row(~torch.isfinite(labels))
            raise UserInputError(
                f"{self.name}: row {row}: target {labels[row].tolist()} is not finite (NaN or inf); "
                "drop or fix that example"
            )
        return labels

    def _class_labels(self, labels: Tensor) -> Tensor:
        labels = labels.detach().flatten()
        if labels.is_floating_point():
            bad = ~torch.isfinite(labels) | (labels != labels.round())
            if bad.any():
                row = int(bad.nonzero()[0])
                raise UserInputError(
                    f"{self.name}: row {row}: label {labels[row].item()} is not a class index; "
                    "for real-valued targets use target_type='regression'"
                )
        labels = labels.long()
        if len(labels) and labels.min() < 0:
            raise UserInputError(f"{self.name}: labels must be >= 0, got {int(labels.min())}")
        if not self.class_names:
            n = int(labels.max()) + 1 if len(labels) else 0
            if self.target_type == "multiple_choice":
                n = max([n, *(len(group) for group in self.texts)])
            self.class_names = [str(c) for c in range(n)]
        return labels

    def _check_option_labels(self) -> None:
        if len(self.texts) != len(self.labels):
            return  # reported below
        sizes = torch.tensor([len(group) for group in self.texts], dtype=torch.long)
        bad = self.labels >= sizes
        if bool(bad.any()):
            row = int(bad.nonzero()[0])
            raise UserInputError(
                f"{self.name}: row {row} has {int(sizes[row])} options but label {int(self.labels[row])}; "
                "a label indexes the example's own options (0-based)"
            )
        if len(sizes) and int(sizes.max()) > len(self.class_names):
            raise UserInputError(
                f"{self.name}: an example has {int(sizes.max())} options but class_names name "
                f"{len(self.class_names)} positions; give one name per option position (e.g. A, B, C, D, E)"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_multiple_choice(self) -> bool:
        return self.target_type == "multiple_choice"

    @property
    def flat_texts(self) -> list[str]:
        """Every sequence the backbone reads: the texts, or every option of every group in order."""
        if self.is_multiple_choice:
            return [text for group in self.texts for text in group]
        return list(self.texts)

    @property
    def targets(self) -> Tensor:
        """The labels under their regression name (the same tensor)."""
        return self.labels

    @property
    def is_regression(self) -> bool:
        return self.target_type == "regression"

    @property
    def is_paired(self) -> bool:
        return self.text_pair is not None

    @property
    def num_classes(self) -> int:
        if self.is_regression:
            raise UserInputError(
                f"{self.name}: a regression dataset has no classes; use num_outputs (the number of "
                "target columns) instead"
            )
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """The width of a head for this data: C classes, or the k target columns."""
        if self.is_regression:
            return 1 if self.labels.dim() == 1 else int(self.labels.shape[1])
        return len(self.class_names)

    def subset(self, indices: Sequence[int] | Tensor, name: str | None = None) -> TextDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        rows = idx.tolist()
        return TextDataset(
            texts=[self.texts[i] for i in rows],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            name=name or self.name,
            target_type=self.target_type,
            text_pair=None if self.text_pair is None else [self.text_pair[i] for i in rows],
        )

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[TextBatch]:
        """Yield :class:`TextBatch` es (texts, labels and, for pairs, text_pair); shuffled with
        ``generator`` when asked. Single-text batches unpack as ``texts, labels``."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            idx = order[start : start + batch_size].tolist()
            yield TextBatch(
                texts=[self.texts[i] for i in idx],
                labels=self.labels[idx],
                text_pair=None if self.text_pair is None else [self.text_pair[i] for i in idx],
            )
