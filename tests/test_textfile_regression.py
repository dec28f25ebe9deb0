"""Bring-your-own CSV/JSONL files with numeric targets and text pairs."""

from __future__ import annotations

import json

import pytest
import torch

from bayeshead.data.textfile import DataFileError, load_text_file


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_csv_regression_targets_and_pairs(tmp_path):
    path = tmp_path / "sim.csv"
    path.write_text("a,b,score\nhello,hi,4.5\ncat,dog,1.25\nx,y,0\n", encoding="utf-8")
    data = load_text_file(path, "a", "score", target_type="regression", text_pair_field="b")
    assert data.target_type == "regression"
    assert data.labels.dtype == torch.float32 and data.labels.tolist() == [4.5, 1.25, 0.0]
    assert data.texts == ["hello", "cat", "x"] and data.text_pair == ["hi", "dog", "y"]


def test_jsonl_multi_output_from_columns_and_from_a_list(tmp_path):
    cols = _jsonl(tmp_path / "c.jsonl", [{"text": "a", "y1": 1, "y2": 2.5}, {"text": "b", "y1": -1, "y2": 0.5}])
    data = load_text_file(cols, "text", ["y1", "y2"], target_type="regression")
    assert data.labels.tolist() == [[1.0, 2.5], [-1.0, 0.5]] and data.num_outputs == 2
    assert data.class_names == ["y1", "y2"]
    lists = _jsonl(tmp_path / "l.jsonl", [{"text": "a", "y": [1, 2.5]}, {"text": "b", "y": [-1, 0.5]}])
    assert torch.equal(load_text_file(lists, "text", "y", target_type="regression").labels, data.labels)


def test_classification_stays_the_default_and_reads_pairs(tmp_path):
    path = _jsonl(tmp_path / "nli.jsonl", [{"p": "a", "h": "b", "label": "yes"}, {"p": "c", "h": "d", "label": "no"}])
    data = load_text_file(path, "p", "label", text_pair_field="h")
    assert data.target_type == "classification" and data.class_names == ["no", "yes"]
    assert data.labels.tolist() == [1, 0] and data.text_pair == ["b", "d"]


def test_a_float_label_under_classification_says_to_use_regression(tmp_path):
    path = _jsonl(tmp_path / "f.jsonl", [{"text": "a", "label": 0.5}, {"text": "b", "label": 1.5}])
    with pytest.raises(DataFileError, match=r"f.jsonl: row 1: .*float.*regression"):
        load_text_file(path)


@pytest.mark.parametrize(
    "value, message",
    [
        ('"high"', "'high' in 'y' is not a number"),
        ("NaN", "not finite"),
        ("Infinity", "not finite"),
        ('"inf"', "not finite"),
        ("null", "missing value for 'y'"),
        ("true", "is bool; expected a number"),
        ('""', "is not a number"),
    ],
)
def test_bad_jsonl_targets_name_file_and_row(tmp_path, value, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "y": 1.0}\n{"text": "ok", "y": 2.0}\n{"text": "bad", "y": ' + value + "}\n")
    with pytest.raises(DataFileError, match=rf"bad.jsonl: row 3: .*{message}"):
        load_text_file(path, label_field="y", target_type="regression")


def test_bad_csv_target_row_counts_the_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,y\na,1\nb,nan\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"bad.csv: row 3: .*not finite"):
        load_text_file(path, label_field="y", target_type="regression")


def test_missing_pair_column_and_ragged_targets(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("text,label\na,1\nb,2\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="no column 'second'.*--text-pair-field"):
        load_text_file(path, target_type="regression", text_pair_field="second")
    ragged = _jsonl(tmp_path / "r.jsonl", [{"text": "a", "y": [1, 2]}, {"text": "b", "y": [1]}])
    with pytest.raises(DataFileError, match="row 2: 1 targets but row 1 has 2"):
        load_text_file(ragged, label_field="y", target_type="regression")
