"""Bring-your-own data: a CSV/TSV or JSON Lines file with a text column and a label column.

Every problem is reported with the file, the row (1-based; for CSV the header is row 1) and
what was wrong: a missing file, an empty file, bytes that are not UTF-8, a missing column,
a value that is not text, an empty label, a label the training data did not have, or a
training file with a single class.

Labels may be strings or integers. The classes of a training file are its distinct labels,
sorted (integers numerically); validation and test files are read with the training classes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bayeshead.data.dataset import TextDataset
from bayeshead.errors import UserInputError

__all__ = ["DataFileError", "read_text_file", "parse_jsonl", "read_records", "load_text_file", "load_text_column"]

_CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}


class DataFileError(UserInputError):
    """A data file that cannot be used, with the file and row named."""


def read_text_file(path: str | Path) -> str:
    """The text of a UTF-8 file (a BOM is dropped); a missing, undecodable or empty file is a
    :class:`DataFileError` naming the file (and the line of the first bad bytes)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataFileError(
            f"{path}: line {line}: bytes {data[err.start:err.end]!r} at offset {err.start} are not "
            "valid UTF-8; re-save the file as UTF-8"
        ) from None
    if not text.strip():
        raise DataFileError(f"{path}: the file is empty")
    return text


def parse_jsonl(text: str, path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of JSON Lines ``text`` read from ``path``."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFileError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise DataFileError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    return records


def read_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """``(row number, record)`` pairs from a CSV/TSV (header row) or JSON Lines file."""
    path = Path(path)
    text = read_text_file(path)
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_CSV_SUFFIXES[suffix])
        records = [(reader.line_num, dict(row)) for row in reader]
    elif suffix in _JSONL_SUFFIXES:
        records = parse_jsonl(text, path)
    else:
        raise DataFileError(
            f"{path}: unknown file type {suffix or '(none)'!r}; expected .csv, .tsv, .jsonl or .ndjson"
        )
    if not records:
        raise DataFileError(f"{path}: the file has no data rows")
    return records


def _label_key(label: Any) -> tuple[int, Any]:
    return (0, label) if isinstance(label, int) else (1, str(label))


def load_text_file(
    path: str | Path,
    text_field: str = "text",
    label_field: str = "label",
    class_names: Sequence[str] | None = None,
) -> TextDataset:
    """Read ``path`` into a :class:`TextDataset`.

    ``class_names`` fixes the classes (pass the training set's for validation and test files);
    without it the classes are this file's distinct labels, and there must be at least two.
    """
    path = Path(path)
    records = read_records(path)
    first_row, first = records[0]
    missing = [f for f in (text_field, label_field) if f not in first]
    if missing:
        raise DataFileError(
            f"{path}: row {first_row}: no column {missing[0]!r}; the columns are {sorted(first)}. "
            "Name the right ones with --text-field and --label-field"
        )
    texts: list[str] = []
    raw_labels: list[Any] = []
    for row, record in records:
        for field in (text_field, label_field):
            if field not in record or record[field] is None:
                raise DataFileError(f"{path}: row {row}: missing value for {field!r}")
        text, label = record[text_field], record[label_field]
        if not isinstance(text, str):
            raise DataFileError(f"{path}: row {row}: {text_field!r} is {type(text).__name__} {text!r}, not text")
        if isinstance(label, bool):  # JSON true/false
            label = "true" if label else "false"
        elif not isinstance(label, (str, int)):
            raise DataFileError(
                f"{path}: row {row}: label {label!r} is {type(label).__name__}; expected a string or an integer"
            )
        if isinstance(label, str):
            label = label.strip()
            if not label:
                raise DataFileError(f"{path}: row {row}: empty label in {label_field!r}")
        texts.append(text)
        raw_labels.append(label)
    if class_names is None:
        classes = sorted(set(raw_labels), key=_label_key)
        if len(classes) < 2:
            raise DataFileError(
                f"{path}: every row has the label {classes[0]!r}; a classifier needs at least two classes"
            )
        names = [str(c) for c in classes]
    else:
        names = [str(c) for c in class_names]
    index = {name: i for i, name in enumerate(names)}
    labels = []
    for (row, _), label in zip(records, raw_labels, strict=True):
        if str(label) not in index:
            raise DataFileError(f"{path}: row {row}: label {label!r} is not one of the training classes {names}")
        labels.append(index[str(label)])
    return TextDataset(texts, torch.tensor(labels), names, name=path.name)


def load_text_column(path: str | Path, text_field: str = "text") -> list[str]:
    """The texts of ``path`` alone (labels, if any, are ignored): for unlabelled OOD sets."""
    path = Path(path)
    records = read_records(path)
    first_row, first = records[0]
    if text_field not in first:
        raise DataFileError(
            f"{path}: row {first_row}: no column {text_field!r}; the columns are {sorted(first)}. "
            "Name the right one with --text-field"
        )
    texts = []
    for row, record in records:
        text = record.get(text_field)
        if not isinstance(text, str):
            raise DataFileError(f"{path}: row {row}: {text_field!r} is {type(text).__name__} {text!r}, not text")
        texts.append(text)
    return texts

