"""Readers for the original files of the common-sense QA benchmarks (BLoB / Laplace-LoRA protocol).

Each reader takes one file and returns its questions as :class:`QARecord` objects, in file order.
Every problem raises :class:`bayeshead.data.textfile.DataFileError` with the file, the line
(JSON Lines) or record and line (CSV), and what is wrong.

File families (see ``shared/data/README.md`` for sources and counts):

* WinoGrande v1.1 (Sakaguchi et al., AAAI 2020), JSON Lines: ``qID``, ``sentence`` (with a ``_``
  blank), ``option1``, ``option2``, ``answer`` = the string ``"1"`` or ``"2"``.
* ARC (Clark et al., 2018) and OpenBookQA (Mihaylov et al., EMNLP 2018), JSON Lines: ``id``,
  ``question.stem``, ``question.choices`` = list of ``{text, label}``, ``answerKey``. Labels are
  ``A``-``E`` or, in some ARC questions, ``"1"``-``"4"``; ARC has questions with 3 or 5 options.
* BoolQ (Clark et al., NAACL 2019), JSON Lines: ``question``, ``title``, ``answer`` (JSON
  boolean), ``passage``.
* MMLU (Hendrycks et al., ICLR 2021), CSV without a header, 6 columns: question, options A-D,
  answer letter. Quoted fields may contain line breaks.

The per-question conversions (:func:`winogrande_record`, :func:`lettered_choice_record`,
:func:`boolq_record`, :func:`mmlu_record`) are shared with :mod:`bayeshead.tasks.hub`, which
builds the same records from the Hugging Face versions of these datasets.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayeshead.data.textfile import DataFileError, parse_jsonl, read_text_file
from bayeshead.tasks.records import QARecord, letters

__all__ = [
    "BOOLQ_CHOICES",
    "read_winogrande",
    "read_arc_or_obqa",
    "read_boolq",
    "read_mmlu_csv",
]

BOOLQ_CHOICES: tuple[str, str] = ("true", "false")
"""BoolQ options: index 0 is ``true``, index 1 is ``false`` (the words the BLoB prompt asks for)."""

_MMLU_LETTERS = letters(4)


def _jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` pairs of a JSON Lines file; blank lines are skipped."""
    return parse_jsonl(read_text_file(path), path)


def get_field(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``obj[key]``, which must be present and of type ``kind`` (a ``bool`` is not an ``int``);
    else :class:`DataFileError` prefixed with ``where``."""
    if key not in obj:
        raise DataFileError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataFileError(
            f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


# ----- one record from its fields; shared by the file readers and bayeshead.tasks.hub -----


def winogrande_record(obj: Mapping[str, Any], record_id: str, where: str) -> QARecord:
    """A WinoGrande question from ``sentence``, ``option1``, ``option2`` and ``answer`` (the
    string ``"1"`` or ``"2"``, which becomes index 0 or 1)."""
    answer = get_field(obj, "answer", str, where)
    if answer not in ("1", "2"):
        raise DataFileError(f'{where}: answer must be "1" or "2", got {answer!r}')
    return QARecord(
        id=record_id,
        question=get_field(obj, "sentence", str, where),
        choices=(get_field(obj, "option1", str, where), get_field(obj, "option2", str, where)),
        labels=letters(2),
        answer=int(answer) - 1,
    )


def lettered_choice_record(
    record_id: str,
    stem: str,
    texts: Sequence[str],
    source_labels: Sequence[str],
    key: str,
    where: str,
) -> QARecord:
    """An ARC / OpenBookQA question: the answer is the position of ``key`` among the source's
    choice labels (so numeric keys ``"1"``-``"4"`` map to their option), and the record's labels
    are re-lettered ``A``, ``B``, ... by position."""
    if len(texts) != len(source_labels):
        raise DataFileError(
            f"{where}: {len(texts)} choice texts but {len(source_labels)} choice labels"
        )
    if len(texts) < 2:
        raise DataFileError(f"{where}: expected at least 2 choices, got {len(texts)}")
    labels = list(source_labels)
    if len(set(labels)) != len(labels):
        raise DataFileError(f"{where}: repeated choice labels {labels}")
    if key not in labels:
        raise DataFileError(f"{where}: answer key {key!r} is not among the choice labels {labels}")
    return QARecord(
        id=record_id,
        question=stem,
        choices=tuple(texts),
        labels=letters(len(texts)),
        answer=labels.index(key),
    )


def boolq_record(obj: Mapping[str, Any], record_id: str, where: str) -> QARecord:
    """A BoolQ question from ``question``, ``passage`` and ``answer`` (a boolean): choices
    :data:`BOOLQ_CHOICES`, ``true`` is index 0."""
    answer = get_field(obj, "answer", bool, where)
    return QARecord(
        id=record_id,
        question=get_field(obj, "question", str, where),
        choices=BOOLQ_CHOICES,
        labels=letters(2),
        answer=0 if answer else 1,
        passage=get_field(obj, "passage", str, where),
    )


def mmlu_record(
    record_id: str, question: str, choices: Sequence[str], answer: int, where: str
) -> QARecord:
    """An MMLU question: 4 options labelled ``A``-``D``, ``answer`` their 0-based index."""
    if len(choices) != 4:
        raise DataFileError(f"{where}: expected 4 options (A-D), got {len(choices)}")
    if not 0 <= answer < 4:
        raise DataFileError(f"{where}: answer index must be 0-3 (A-D), got {answer}")
    return QARecord(
        id=record_id,
        question=question,
        choices=tuple(choices),
        labels=_MMLU_LETTERS,
        answer=answer,
    )


# ----- file readers -----


def read_winogrande(path: str | Path) -> list[QARecord]:
    """WinoGrande JSON Lines: two options, ``answer`` ``"1"``/``"2"`` becomes index 0/1."""
    records = []
    for number, obj in _jsonl(path):
        where = f"{path}: line {number}"
        records.append(winogrande_record(obj, get_field(obj, "qID", str, where), where))
    return records


def read_arc_or_obqa(path: str | Path) -> list[QARecord]:
    """ARC or OpenBookQA JSON Lines.

    The answer is the position of ``answerKey`` among the file's choice labels, so numeric keys
    (``"1"``-``"4"``) map to their option; the record's labels are re-lettered ``A``, ``B``, ...
    """
    records = []
    for number, obj in _jsonl(path):
        where = f"{path}: line {number}"
        question = get_field(obj, "question", dict, where)
        stem = get_field(question, "stem", str, f"{where}: question")
        raw_choices = get_field(question, "choices", list, f"{where}: question")
        if len(raw_choices) < 2:
            raise DataFileError(f"{where}: expected at least 2 choices, got {len(raw_choices)}")
        texts, file_labels = [], []
        for i, choice in enumerate(raw_choices):
            cwhere = f"{where}: question.choices[{i}]"
            if not isinstance(choice, dict):
                raise DataFileError(f"{cwhere}: expected an object, got {type(choice).__name__}")
            texts.append(get_field(choice, "text", str, cwhere))
            file_labels.append(get_field(choice, "label", str, cwhere))
        key = get_field(obj, "answerKey", str, where)
        record_id = get_field(obj, "id", str, where)
        records.append(lettered_choice_record(record_id, stem, texts, file_labels, key, where))
    return records


def read_boolq(path: str | Path) -> list[QARecord]:
    """BoolQ JSON Lines with passages: choices :data:`BOOLQ_CHOICES`, ``true`` is index 0.

    BoolQ has no ids; a record's id is ``"<file stem>-<0-based position>"``, e.g. ``"dev-0"``.
    """
    path = Path(path)
    return [
        boolq_record(obj, f"{path.stem}-{index}", f"{path}: line {number}")
        for index, (number, obj) in enumerate(_jsonl(path))
    ]


def read_mmlu_csv(path: str | Path) -> list[QARecord]:
    """MMLU subject CSV (no header): question, 4 options, answer letter ``A``-``D``.

    Read with the ``csv`` module, so line breaks inside quoted fields are kept. A record's id is
    ``"<file stem>-<0-based position>"``, e.g. ``"college_physics_test-0"``.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text_file(path), newline=""))
    records = []
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataFileError(f"{path}: line {start}: not valid CSV ({err})") from None
        where = f"{path}: record {len(records) + 1} (line {start})"
        start = reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != 6:
            raise DataFileError(
                f"{where}: expected 6 columns (question, A, B, C, D, answer), got {len(row)}"
            )
        answer = row[5].strip()
        if answer not in _MMLU_LETTERS:
            raise DataFileError(f"{where}: answer must be one of A-D, got {row[5]!r}")
        records.append(
            mmlu_record(
                f"{path.stem}-{len(records)}", row[0], row[1:5], _MMLU_LETTERS.index(answer), where
            )
        )
    if not records:
        raise DataFileError(f"{path}: the file has no records")
    return records
