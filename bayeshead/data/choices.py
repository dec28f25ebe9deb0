"""Multiple-choice data in the per-option formulation: every option is its own text.

:class:`OptionDataset` stores the option texts of Q questions flat (all options of question 0,
then question 1, ...), the option count n_q of each question and the index y_q of its correct
option, so questions with different option counts need no padding. :meth:`OptionDataset.batches`
yields whole questions in a seeded order (a permutation of the questions drawn from ``seed`` and
the epoch alone, as the trainer orders examples), each batch flat again (:class:`OptionBatch`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["OptionBatch", "OptionDataset"]


@dataclass(frozen=True)
class OptionBatch:
    """Q questions flat: ``texts`` (N = Σ counts), ``counts`` (Q,), ``labels`` (Q,), and the
    dataset positions ``questions`` (Q,) of the questions."""

    texts: list[str]
    counts: Tensor
    labels: Tensor
    questions: Tensor


@dataclass
class OptionDataset:
    """Option texts grouped by question.

    Attributes:
        texts: every option's sequence (question + option), flat in question order.
        counts: (Q,) int64, the number of options of each question (≥ 2).
        labels: (Q,) int64, the index of the correct option within its question.
        question_ids: the dataset's id of each question (empty: none given).
        name: for messages.
    """

    texts: list[str]
    counts: Tensor
    labels: Tensor
    question_ids: list[str] = field(default_factory=list)
    name: str = "data"

    def __post_init__(self) -> None:
        if isinstance(self.texts, str) or not all(isinstance(t, str) for t in self.texts):
            raise TypeError(f"{self.name}: texts must be a list of strings (one per option)")
        self.texts = list(self.texts)
        counts = torch.as_tensor(self.counts)
        labels = torch.as_tensor(self.labels)
        if counts.is_floating_point() or labels.is_floating_point():
            raise TypeError(
                f"{self.name}: counts and labels must be integers, got dtypes {counts.dtype} and {labels.dtype}"
            )
        self.counts, self.labels = counts.long().flatten(), labels.long().flatten()
        if self.counts.numel() != self.labels.numel():
            raise ValueError(f"{self.name}: {self.counts.numel()} option counts but {self.labels.numel()} labels")
        if self.counts.numel() and int(self.counts.min()) < 2:
            q = int((self.counts < 2).nonzero()[0])
            raise ValueError(
                f"{self.name}: question {q} has {int(self.counts[q])} option(s); a question needs at least 2"
            )
        if int(self.counts.sum()) != len(self.texts):
            raise ValueError(
                f"{self.name}: the counts sum to {int(self.counts.sum())} but there are {len(self.texts)} texts; "
                "give every option of every question, in question order"
            )
        bad = (self.labels < 0) | (self.labels >= self.counts)
        if bool(bad.any()):
            q = int(bad.nonzero()[0])
            raise ValueError(
                f"{self.name}: question {q} has {int(self.counts[q])} options but label {int(self.labels[q])}; "
                "labels index the question's own options (0-based)"
            )
        if self.question_ids and len(self.question_ids) != self.counts.numel():
            raise ValueError(f"{self.name}: {len(self.question_ids)} question ids for {self.counts.numel()} questions")
        self._starts = torch.cumsum(self.counts, 0) - self.counts

    @classmethod
    def from_groups(
        cls,
        options: Sequence[Sequence[str]],
        labels: Sequence[int],
        question_ids: Sequence[str] = (),
        name: str = "data",
    ) -> OptionDataset:
        """From a list of option-text lists (one list per question) and the correct indices."""
        groups = [list(group) for group in options]
        return cls(
            texts=[text for group in groups for text in group],
            counts=torch.tensor([len(group) for group in groups], dtype=torch.long),
            labels=torch.as_tensor(list(labels), dtype=torch.long),
            question_ids=list(question_ids),
            name=name,
        )

    def __len__(self) -> int:
        """The number of questions."""
        return int(self.counts.numel())

    @property
    def num_options(self) -> int:
        """N, the number of option texts."""
        return len(self.texts)

    @property
    def max_options(self) -> int:
        return int(self.counts.max()) if len(self) else 0

    @property
    def group(self) -> Tensor:
        """The question of every option text, (N,)."""
        return torch.repeat_interleave(torch.arange(len(self)), self.counts)

    def options(self, question: int) -> list[str]:
        """The option texts of one question."""
        start = int(self._starts[question])
        return self.texts[start : start + int(self.counts[question])]

    def select(self, questions: Sequence[int] | Tensor) -> OptionBatch:
        """The given questions (dataset positions), flat, in the given order."""
        index = torch.as_tensor(questions, dtype=torch.long).flatten()
        texts = [text for q in index.tolist() for text in self.options(q)]
        return OptionBatch(texts=texts, counts=self.counts[index], labels=self.labels[index], questions=index)

    def subset(self, questions: Sequence[int] | Tensor, name: str | None = None) -> OptionDataset:
        """A new dataset of the given questions."""
        batch = self.select(questions)
        ids = [self.question_ids[q] for q in batch.questions.tolist()] if self.question_ids else []
        return OptionDataset(batch.texts, batch.counts, batch.labels, ids, name or self.name)

    def order(self, seed: int, epoch: int = 0) -> Tensor:
        """The question order of ``epoch``: a permutation drawn from ``seed`` and ``epoch`` alone
        (the generator is seeded with ``seed · 1000003 + epoch``, as the trainer does)."""
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        return torch.randperm(len(self), generator=generator)

    def batches(self, batch_size: int, *, seed: int | None = 0, epoch: int = 0) -> Iterator[OptionBatch]:
        """Batches of ``batch_size`` whole questions (the last may be smaller), in the seeded order
        of :meth:`order`, or in dataset order with ``seed=None``."""
        if batch_size <= 0:
            raise ValueError(f"{self.name}: batch_size counts questions and must be positive, got {batch_size}")
        order = torch.arange(len(self)) if seed is None else self.order(seed, epoch)
        for start in range(0, len(self), batch_size):
            yield self.select(order[start : start + batch_size])
