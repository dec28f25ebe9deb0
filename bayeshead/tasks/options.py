"""The per-option formulation of the QA tasks: every answer option is its own sequence.

Where the letter formulation (:func:`~bayeshead.tasks.prompts.format_prompt`) lists all options
in one prompt and asks for a letter, here option k of a question becomes one text, and a
per-option head (:mod:`bayeshead.heads.option_base`) scores each text with the same
parameters; the probability of an option is the softmax over its question's options only, so a
question's option count (2 to 5) needs no padding classes. Texts by template family:

* WinoGrande: the sentence with its ``_`` blank filled by the option (the cloze form of the
  WinoGrande paper's scoring)::

      The trophy doesn't fit into the suitcase because the trophy is too large.

* ARC, OpenBookQA, MMLU (``multiple_choice``)::

      Question: <question>
      Answer: <option>

* BoolQ (passage cut to :data:`~bayeshead.tasks.prompts.BOOLQ_PASSAGE_CHARS` characters, as in
  the letter prompt), options ``true`` / ``false``::

      Passage: <passage>
      Question: <question>
      Answer: <true | false>
"""

from __future__ import annotations

from collections.abc import Sequence

from bayeshead.data.dataset import TextDataset
from bayeshead.errors import UserInputError
from bayeshead.tasks.prompts import BOOLQ_PASSAGE_CHARS, PROMPT_FAMILY
from bayeshead.tasks.records import QARecord, letters

__all__ = ["FORMULATIONS", "OPTION_TEMPLATE", "BOOLQ_OPTION_TEMPLATE", "option_dataset", "option_texts"]

FORMULATIONS = ("letter", "options")
"""``letter``: one prompt per question, a C-way head over answer letters (BLoB's protocol);
``options``: one text per option, a per-option head."""

OPTION_TEMPLATE = "Question: {question}\nAnswer: {option}"
BOOLQ_OPTION_TEMPLATE = "Passage: {passage}\nQuestion: {question}\nAnswer: {option}"

_WINOGRANDE = ("winogrande_s", "winogrande_m")
_BLANK = "_"


def _fill_blank(record: QARecord, option: str) -> str:
    if record.question.count(_BLANK) != 1:
        raise UserInputError(
            f"{record.id}: a WinoGrande sentence needs exactly one '_' blank to put the option in, found "
            f"{record.question.count(_BLANK)} in {record.question[:80]!r}"
        )
    return record.question.replace(_BLANK, option)


def option_texts(task_name: str, record: QARecord) -> list[str]:
    """The sequence of each option of ``record`` (task ``task_name``), in option order."""
    family = PROMPT_FAMILY.get(task_name)
    if family is None:
        raise UserInputError(f"unknown task {task_name!r}; known tasks: {', '.join(sorted(PROMPT_FAMILY))}")
    if task_name in _WINOGRANDE:
        return [_fill_blank(record, option) for option in record.choices]
    if family == "boolq":
        if record.passage is None:
            raise UserInputError(f"{record.id}: a BoolQ question needs a passage")
        passage = record.passage[:BOOLQ_PASSAGE_CHARS]
        return [
            BOOLQ_OPTION_TEMPLATE.format(passage=passage, question=record.question, option=option)
            for option in record.choices
        ]
    return [OPTION_TEMPLATE.format(question=record.question, option=option) for option in record.choices]


def option_dataset(
    task_name: str, records: Sequence[QARecord], name: str, class_names: Sequence[str] | None = None
) -> TextDataset:
    """The per-option dataset of ``records``: one option group (a tuple of option texts) per
    question and the index of its correct option (``target_type="multiple_choice"``, named
    ``<task>/<name>``); ``class_names`` name the option positions (default: letters up to the
    largest group)."""
    if not records:
        raise UserInputError(f"{task_name}/{name}: no questions to build a dataset from")
    groups = [tuple(option_texts(task_name, r)) for r in records]
    names = list(class_names) if class_names is not None else list(letters(max(len(g) for g in groups)))
    return TextDataset(
        texts=groups,
        labels=[r.answer for r in records],
        class_names=names,
        name=f"{task_name}/{name}",
        target_type="multiple_choice",
    )
