"""Bring-your-own data: a CSV/TSV or JSON Lines file with a text column (optionally a second
text column for pairs) and a label column (class labels) or numeric target column(s) (regression).

Every problem is reported with the file, the row (1-based; for CSV the header is row 1) and
what was wrong: a missing file, an empty file, bytes that are not UTF-8, a missing column,
a value that is not text, an empty label, a label the training data did not have, or a
training file with a single class.

Labels may be strings or integers. The classes of a training file are its distinct labels,
sorted (integers numerically); validation and test files are read with the training classes.
Regression targets must be numbers (JSON numbers or numeric strings), finite, in every row.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bayeshead.data.dataset import TARGET_TYPES, TargetType, TextDataset
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
        header = reader.fieldnames or []
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise DataFileError(
                f"{path}: the header names the column(s) {repeated} more than once; only one value per name "
                "would be kept. Rename the duplicates"
            )
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


def _first_record_has(path: Path, records: list[tuple[int, dict[str, Any]]], fields: Sequence[str]) -> None:
    first_row, first = records[0]
    missing = [f for f in fields if f not in first]
    if missing:
        raise DataFileError(
            f"{path}: row {first_row}: no column {missing[0]!r}; the columns are {sorted(first)}. "
            "Name the right ones with --text-field, --text-pair-field and --label-field"
        )


def _text(path: Path, row: int, record: dict[str, Any], field: str) -> str:
    if field not in record or record[field] is None:
        raise DataFileError(f"{path}: row {row}: missing value for {field!r}")
    text = record[field]
    if not isinstance(text, str):
        raise DataFileError(f"{path}: row {row}: {field!r} is {type(text).__name__} {text!r}, not text")
    if not text.strip():
        raise DataFileError(f"{path}: row {row}: {field!r} is empty or only whitespace; remove the row or fill it in")
    return text


_MISSING_LABELS = frozenset({"nan", "none", "null", "na", "n/a", "inf", "-inf", "+inf"})


def _check_label_text(path: Path, row: int, field: str, label: str) -> None:
    """Refuse missing-value markers and non-integer numbers as class labels."""
    if label.lower() in _MISSING_LABELS:
        raise DataFileError(
            f"{path}: row {row}: label {label!r} in {field!r} looks like a missing value, not a class; "
            "remove the row or give it a class"
        )
    try:
        value = float(label)
    except ValueError:
        return
    if not value.is_integer():
        raise DataFileError(
            f"{path}: row {row}: label {label!r} in {field!r} is a fractional number, not a class; for numeric "
            "targets use --target-type regression, otherwise name the classes with words or integers"
        )


def _number(path: Path, row: int, field: str, value: Any) -> float:
    """A finite real target from a JSON number or a numeric string; anything else names file and row."""
    if value is None:
        raise DataFileError(f"{path}: row {row}: missing value for {field!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataFileError(
            f"{path}: row {row}: target {value!r} in {field!r} is {type(value).__name__}; expected a number"
        )
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except ValueError:
        raise DataFileError(
            f"{path}: row {row}: target {value!r} in {field!r} is not a number; regression targets must be "
            "numeric (use --target-type classification for class labels)"
        ) from None
    if not math.isfinite(number):
        raise DataFileError(
            f"{path}: row {row}: target {value!r} in {field!r} is not finite (NaN or inf); drop or fix that row"
        )
    return number


def _regression_row(path: Path, row: int, record: dict[str, Any], fields: Sequence[str]) -> list[float]:
    """The target(s) of one record: one number per field, or a JSON list in a single field."""
    if len(fields) == 1 and isinstance(record.get(fields[0]), list):
        values = record[fields[0]]
        if not values:
            raise DataFileError(f"{path}: row {row}: {fields[0]!r} is an empty list; expected numbers")
        return [_number(path, row, fields[0], v) for v in values]
    return [_number(path, row, field, record.get(field)) for field in fields]


def _class_label(path: Path, row: int, record: dict[str, Any], field: str) -> Any:
    if field not in record or record[field] is None:
        raise DataFileError(f"{path}: row {row}: missing value for {field!r}")
    label = record[field]
    if isinstance(label, bool):  # JSON true/false
        label = "true" if label else "false"
    elif not isinstance(label, (str, int)):
        raise DataFileError(
            f"{path}: row {row}: label {label!r} is {type(label).__name__}; expected a string or an integer "
            "(for real-valued targets pass target_type='regression', --target-type regression)"
        )
    if isinstance(label, str):
        label = label.strip()
        if not label:
            raise DataFileError(f"{path}: row {row}: empty label in {field!r}")
        _check_label_text(path, row, field, label)
    return label


def load_text_file(
    path: str | Path,
    text_field: str = "text",
    label_field: str | Sequence[str] = "label",
    class_names: Sequence[str] | None = None,
    *,
    target_type: TargetType = "classification",
    text_pair_field: str | None = None,
) -> TextDataset:
    """Read ``path`` into a :class:`TextDataset`.

    ``target_type="classification"`` (the default): ``class_names`` fixes the classes (pass the
    training set's for validation and test files); without it the classes are this file's
    distinct labels, and there must be at least two.

    ``target_type="regression"``: each row's target is a number (a JSON number or a numeric
    string); ``label_field`` may name several columns (k outputs, targets (N, k)), or one JSON
    field may hold a list of k numbers. A non-numeric, empty, NaN or infinite target is a
    :class:`DataFileError` naming the file and row. ``class_names`` then names the outputs.

    ``text_pair_field`` names a second text column: the dataset holds pairs (``text_pair``).
    """
    path = Path(path)
    if target_type not in TARGET_TYPES:
        raise UserInputError(f"target_type must be 'classification' or 'regression', got {target_type!r}")
    label_fields = [label_field] if isinstance(label_field, str) else list(label_field)
    if not label_fields:
        raise UserInputError("label_field names no column; give at least one")
    if target_type == "classification" and len(label_fields) != 1:
        raise UserInputError(
            f"classification reads one label column, got {label_fields}; several columns are regression "
            "targets (target_type='regression')"
        )
    records = read_records(path)
    text_fields = [text_field] + ([text_pair_field] if text_pair_field else [])
    shared = sorted(set(text_fields) & set(label_fields)) or (
        [text_field] if text_pair_field == text_field else []
    )
    if shared:
        raise DataFileError(
            f"{path}: column {shared[0]!r} is named both as text and as label (or twice as text); name "
            "different columns with --text-field, --text-pair-field and --label-field"
        )
    _first_record_has(path, records, text_fields + label_fields)
    texts = [_text(path, row, record, text_field) for row, record in records]
    pairs = [_text(path, row, record, text_pair_field) for row, record in records] if text_pair_field else None
    if target_type == "regression":
        rows = [_regression_row(path, row, record, label_fields) for row, record in records]
        for (row, _), values in zip(records, rows, strict=True):
            if len(values) != len(rows[0]):
                raise DataFileError(
                    f"{path}: row {row}: {len(values)} targets but row {records[0][0]} has {len(rows[0])}; "
                    "every row needs the same number of targets"
                )
        targets = torch.tensor(rows, dtype=torch.float32)
        if targets.shape[1] == 1 and len(label_fields) == 1 and not isinstance(records[0][1][label_fields[0]], list):
            targets = targets.squeeze(1)
        names = [str(c) for c in class_names] if class_names is not None else (
            label_fields if len(label_fields) == targets.shape[-1] and targets.dim() == 2 else []
        )
        return TextDataset(texts, targets, names, name=path.name, target_type="regression", text_pair=pairs)
    raw_labels = [_class_label(path, row, record, label_fields[0]) for row, record in records]
    if class_names is None:
        classes = sorted(set(raw_labels), key=_label_key)
        kinds = {type(label).__name__ for label in raw_labels}
        if len(kinds) > 1:
            first = {kind: next(r for (r, _), lab in zip(records, raw_labels, strict=True) if type(lab).__name__ == kind)
                     for kind in sorted(kinds)}
            raise DataFileError(
                f"{path}: the labels in {label_fields[0]!r} mix integers and strings (first int at row "
                f"{first['int']}, first string at row {first['str']}), so 1 and \"1\" would be two classes; "
                "write every label the same way"
            )
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
    return TextDataset(
        texts, torch.tensor(labels), names, name=path.name, target_type="classification", text_pair=pairs
    )


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
        if not text.strip():
            raise DataFileError(f"{path}: row {row}: {text_field!r} is empty or only whitespace")
        texts.append(text)
    return texts

