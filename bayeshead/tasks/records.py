"""The common record type for multiple-choice question answering benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from bayeshead.errors import UserInputError

__all__ = ["QARecord", "letters"]


def letters(n: int) -> tuple[str, ...]:
    """The first ``n`` capital letters: ``letters(3) == ("A", "B", "C")``."""
    if not 0 < n <= 26:
        raise UserInputError(f"a question needs between 1 and 26 choices, got {n}")
    return tuple(chr(ord("A") + i) for i in range(n))


@dataclass(frozen=True)
class QARecord:
    """One multiple-choice question.

    Attributes:
        id: the dataset's identifier of the question (WinoGrande ``qID``, ARC/OpenBookQA ``id``),
            or one made from the file name and position where the dataset has none
            (BoolQ, MMLU).
        question: the question text (WinoGrande: the sentence with its ``_`` blank).
        choices: the answer options, in the order of the file.
        labels: the letters shown for the options, always ``"A"``, ``"B"``, ... by position,
            even when the file labels them ``"1"``-``"4"`` (some ARC questions).
        answer: the index of the correct option in ``choices``.
        passage: the supporting text (BoolQ), else ``None``.
    """

    id: str
    question: str
    choices: tuple[str, ...]
    labels: tuple[str, ...]
    answer: int
    passage: str | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.choices):
            raise UserInputError(
                f"{self.id}: {len(self.choices)} choices but {len(self.labels)} labels"
            )
        if not 0 <= self.answer < len(self.choices):
            raise UserInputError(
                f"{self.id}: answer index {self.answer} is outside 0..{len(self.choices) - 1}"
            )
