"""Bring-your-own data files: CSV/TSV/JSONL parsing and every bad-data error names file and row."""

from __future__ import annotations

import json

import pytest

from bayeshead.data.textfile import DataFileError, load_text_file


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_csv_and_jsonl_give_the_same_dataset(tmp_path):
    rows = [("good film", "pos"), ("bad, really bad", "neg"), ('he said "fine"', "neu"), ("ok", "pos")]
    csv_path = _write(tmp_path, "d.csv", "text,label\n" + "".join(f'"{t.replace(chr(34), chr(34) * 2)}",{y}\n' for t, y in rows))
    jsonl_path = _write(tmp_path, "d.jsonl", "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    a, b = load_text_file(csv_path), load_text_file(jsonl_path)
    assert a.texts == b.texts == [t for t, _ in rows]
    assert a.class_names == b.class_names == ["neg", "neu", "pos"]
    assert a.labels.tolist() == b.labels.tolist() == [2, 0, 1, 2]


def test_integer_and_boolean_labels_and_given_classes(tmp_path):
    path = _write(tmp_path, "d.jsonl", '{"q": "a", "y": 10}\n{"q": "b", "y": 2}\n\n{"q": "c", "y": 2}\n')
    data = load_text_file(path, text_field="q", label_field="y")
    assert data.class_names == ["2", "10"] and data.labels.tolist() == [1, 0, 0]
    val = _write(tmp_path, "v.jsonl", '{"q": "d", "y": 10}\n')
    assert load_text_file(val, "q", "y", class_names=data.class_names).labels.tolist() == [1]
    boolean = _write(tmp_path, "b.jsonl", '{"text": "x", "label": true}\n{"text": "y", "label": false}\n')
    assert load_text_file(boolean).class_names == ["false", "true"]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("e.csv", "", {}, "e.csv: the file is empty"),
        ("h.csv", "text,label\n", {}, "h.csv: the file has no data rows"),
        ("c.csv", "sentence,label\nhi,1\n", {}, "c.csv: row 2: no column 'text'; the columns are ['label', 'sentence']"),
        ("s.csv", "text,label\na,x\nb,x\n", {}, "s.csv: every row has the label 'x'"),
        ("n.jsonl", '{"text": "a", "label": 1}\n{"text": 5, "label": 0}\n', {}, "n.jsonl: row 2: 'text' is int 5, not text"),
        ("m.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', {}, "m.jsonl: row 2: missing value for 'label'"),
        ("j.jsonl", '{"text": "a", "label": 1}\n{oops\n', {}, "j.jsonl: line 2: not valid JSON"),
        ("l.jsonl", '{"text": "a", "label": [1]}\n', {}, "l.jsonl: row 1: label [1] is list"),
        ("u.csv", b"text,label\ncaf\xe9,1\nb,0\n", {}, "u.csv: line 2: bytes b'\\xe9'"),
        ("v.csv", "text,label\na,pos\nb,zzz\n", {"class_names": ["neg", "pos"]}, "v.csv: row 3: label 'zzz' is not one of the training classes"),
        ("x.txt", "hello", {}, "unknown file type '.txt'"),
    ],
)
def test_bad_files_name_file_row_and_problem(tmp_path, name, content, kwargs, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(DataFileError) as info:
        load_text_file(path, **kwargs)
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_text_file(tmp_path / "nope.csv")
