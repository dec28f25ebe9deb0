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
"""

from __future__ import annotations

import csv
import io
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


def _get(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise DataFileError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise DataFileError(
            f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def read_winogrande(path: str | Path) -> list[QARecord]:
    """WinoGrande JSON Lines: two options, ``answer`` ``"1"``/``"2"`` becomes index 0/1."""
    records = []
    for number, obj in _jsonl(path):
        where = f"{path}: line {number}"
        answer = _get(obj, "answer", str, where)
        if answer not in ("1", "2"):
            raise DataFileError(f'{where}: answer must be "1" or "2", got {answer!r}')
        records.append(
            QARecord(
                id=_get(obj, "qID", str, where),
                question=_get(obj, "sentence", str, where),
                choices=(_get(obj, "option1", str, where), _get(obj, "option2", str, where)),
                labels=letters(2),
                answer=int(answer) - 1,
            )
        )
    return records


def read_arc_or_obqa(path: str | Path) -> list[QARecord]:
    """ARC or OpenBookQA JSON Lines.

    The answer is the position of ``answerKey`` among the file's choice labels, so numeric keys
    (``"1"``-``"4"``) map to their option; the record's labels are re-lettered ``A``, ``B``, ...
    """
    records = []
    for number, obj in _jsonl(path):
        where = f"{path}: line {number}"
        question = _get(obj, "question", dict, where)
        stem = _get(question, "stem", str, f"{where}: question")
        raw_choices = _get(question, "choices", list, f"{where}: question")
        if len(raw_choices) < 2:
            raise DataFileError(f"{where}: expected at least 2 choices, got {len(raw_choices)}")
        texts, file_labels = [], []
        for i, choice in enumerate(raw_choices):
            cwhere = f"{where}: question.choices[{i}]"
            if not isinstance(choice, dict):
                raise DataFileError(f"{cwhere}: expected an object, got {type(choice).__name__}")
            texts.append(_get(choice, "text", str, cwhere))
            file_labels.append(_get(choice, "label", str, cwhere))
        if len(set(file_labels)) != len(file_labels):
            raise DataFileError(f"{where}: repeated choice labels {file_labels}")
        key = _get(obj, "answerKey", str, where)
        if key not in file_labels:
            raise DataFileError(
                f"{where}: answer key {key!r} is not among the choice labels {file_labels}"
            )
        records.append(
            QARecord(
                id=_get(obj, "id", str, where),
                question=stem,
                choices=tuple(texts),
                labels=letters(len(texts)),
                answer=file_labels.index(key),
            )
        )
    return records


def read_boolq(path: str | Path) -> list[QARecord]:
    """BoolQ JSON Lines with passages: choices :data:`BOOLQ_CHOICES`, ``true`` is index 0.

    BoolQ has no ids; a record's id is ``"<file stem>-<0-based position>"``, e.g. ``"dev-0"``.
    """
    path = Path(path)
    records = []
    for index, (number, obj) in enumerate(_jsonl(path)):
        where = f"{path}: line {number}"
        answer = _get(obj, "answer", bool, where)
        records.append(
            QARecord(
                id=f"{path.stem}-{index}",
                question=_get(obj, "question", str, where),
                choices=BOOLQ_CHOICES,
                labels=letters(2),
                answer=0 if answer else 1,
                passage=_get(obj, "passage", str, where),
            )
        )
    return records


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
            QARecord(
                id=f"{path.stem}-{len(records)}",
                question=row[0],
                choices=tuple(row[1:5]),
                labels=_MMLU_LETTERS,
                answer=_MMLU_LETTERS.index(answer),
            )
        )
    if not records:
        raise DataFileError(f"{path}: the file has no records")
    return records
