"""Common-sense QA benchmark readers, task table and BLoB prompts, on the real files in
../shared/data (the module is skipped when that folder is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayeshead.data.textfile import DataFileError
from bayeshead.errors import UserInputError
from bayeshead.tasks import (
    PROMPT_FAMILY,
    TASK_FILES,
    QARecord,
    default_data_dir,
    format_prompt,
    load_task,
    read_arc_or_obqa,
    read_boolq,
    read_mmlu_csv,
    read_winogrande,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# The QA data is not part of the repository: it lives in ../shared/data beside the clone (CI always
# has it there, so CI runs every test below). A clone without that folder cannot test these readers
# at all, hence a skip with the reason rather than a failure.
pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"benchmark data folder {DATA} is absent (shared/data of the project)"
)

COUNTS = {
    ("winogrande/train_s.jsonl", read_winogrande): 640,
    ("winogrande/train_m.jsonl", read_winogrande): 2558,
    ("winogrande/dev.jsonl", read_winogrande): 1267,
    ("openbookqa/train.jsonl", read_arc_or_obqa): 4957,
    ("openbookqa/dev.jsonl", read_arc_or_obqa): 500,
    ("arc_challenge/ARC-Challenge-Train.jsonl", read_arc_or_obqa): 1119,
    ("arc_challenge/ARC-Challenge-Dev.jsonl", read_arc_or_obqa): 299,
    ("arc_easy/ARC-Easy-Train.jsonl", read_arc_or_obqa): 2251,
    ("arc_easy/ARC-Easy-Dev.jsonl", read_arc_or_obqa): 570,
    ("boolq/dev.jsonl", read_boolq): 3270,
    ("mmlu/test/college_chemistry_test.csv", read_mmlu_csv): 100,
    ("mmlu/test/college_physics_test.csv", read_mmlu_csv): 102,
}


def _check(records: list[QARecord]) -> None:
    ids = [r.id for r in records]
    assert len(set(ids)) == len(ids)
    for r in records:
        assert isinstance(r, QARecord)
        assert r.question and all(isinstance(c, str) for c in r.choices)
        assert r.labels == tuple("ABCDE"[: len(r.choices)])
        assert 0 <= r.answer < len(r.choices)


@pytest.mark.parametrize(("rel", "reader"), list(COUNTS), ids=[k[0] for k in COUNTS])
def test_every_file_parses_with_the_documented_count(rel, reader):
    records = reader(DATA / rel)
    assert len(records) == COUNTS[(rel, reader)]
    _check(records)


def test_file_level_facts_from_the_readme():
    wg = read_winogrande(DATA / "winogrande/dev.jsonl")
    assert [sum(r.answer == k for r in wg) for k in (0, 1)] == [628, 639]
    boolq = read_boolq(DATA / "boolq/dev.jsonl")
    assert sum(r.answer == 0 for r in boolq) == 2033  # true
    assert all(r.choices == ("true", "false") and r.passage for r in boolq)
    arc_c = read_arc_or_obqa(DATA / "arc_challenge/ARC-Challenge-Dev.jsonl")
    assert sorted(len(r.choices) for r in arc_c if len(r.choices) != 4) == [3, 3, 3, 5]
    five = next(r for r in arc_c if len(r.choices) == 5)
    assert five.answer == 4 and five.labels[-1] == "E"  # its key is "E"
    obqa = read_arc_or_obqa(DATA / "openbookqa/train.jsonl")
    assert all(len(r.choices) == 4 for r in obqa)
    chem = read_mmlu_csv(DATA / "mmlu/test/college_chemistry_test.csv")
    assert sum(any("\n" in x for x in (r.question, *r.choices)) for r in chem) == 6


def test_numeric_arc_keys_map_to_positions():
    # arc_challenge/ARC-Challenge-Dev.jsonl line 90: labels "1"-"4", answerKey "2".
    records = read_arc_or_obqa(DATA / "arc_challenge/ARC-Challenge-Dev.jsonl")
    r = next(r for r in records if r.id == "NYSEDREGENTS_2014_8_20")
    assert r.choices == (
        "greater than the total mass of the products",
        "equal to the total mass of the products",
        "equal to the mass of AgCl",
        "less than the mass of AgCl",
    )
    assert r.labels == ("A", "B", "C", "D")
    assert r.answer == 1
    # line 98: answerKey "1"
    r = next(r for r in records if r.id == "NYSEDREGENTS_2014_8_38")
    assert r.answer == 0 and r.choices[0] == "a definite shape and a definite volume"


def test_load_task_splits():
    expected = {
        "winogrande_s": (640, 1267),
        "winogrande_m": (2558, 1267),
        "arc_challenge": (1119, 299),
        "arc_easy": (2251, 570),
        "obqa": (4957, 500),
        "boolq": (1635, 1635),
        "mmlu_college_chemistry": (None, 100),
        "mmlu_college_physics": (None, 102),
    }
    assert set(TASK_FILES) == set(expected) == set(PROMPT_FAMILY)
    for name, (n_train, n_eval) in expected.items():
        train, evaluation = load_task(name, DATA)
        assert (None if train is None else len(train)) == n_train, name
        assert len(evaluation) == n_eval, name


def test_boolq_halves_are_disjoint_seeded_and_in_file_order():
    train, evaluation = load_task("boolq", DATA)
    again_train, again_eval = load_task("boolq", DATA)
    assert train == again_train and evaluation == again_eval
    position = {r.id: int(r.id.split("-")[1]) for r in train + evaluation}
    assert len(position) == 3270
    assert sorted(position.values()) == list(range(3270))
    for half in (train, evaluation):
        assert [position[r.id] for r in half] == sorted(position[r.id] for r in half)
    # pinned: random.Random(0).shuffle of the 3,270 positions
    assert [r.id for r in train[:3]] == ["dev-3", "dev-8", "dev-10"]
    assert [r.id for r in evaluation[:3]] == ["dev-0", "dev-1", "dev-2"]


def test_data_dir_resolution_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESHEAD_DATA", str(DATA))
    assert default_data_dir() == DATA
    assert len(load_task("obqa")[1]) == 500
    monkeypatch.delenv("BAYESHEAD_DATA")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "main").mkdir()
    monkeypatch.chdir(tmp_path / "main")
    assert default_data_dir() == Path("..").resolve() / "shared" / "data"
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() is None
    with pytest.raises(UserInputError, match="--data-dir or set BAYESHEAD_DATA"):
        load_task("obqa", source="files")
    with pytest.raises(UserInputError, match="--data-dir or set BAYESHEAD_DATA"):
        load_task("obqa", tmp_path / "nowhere")
    with pytest.raises(UserInputError, match="known tasks: arc_challenge, arc_easy, boolq"):
        load_task("arc", DATA)
    with pytest.raises(UserInputError, match="known tasks"):
        format_prompt("arc", read_winogrande(DATA / "winogrande/dev.jsonl")[0])


# ----- golden prompts (one per file family) -----


def test_prompt_winogrande():
    record = read_winogrande(DATA / "winogrande/dev.jsonl")[0]
    assert record.answer == 1
    assert format_prompt("winogrande_s", record) == (
        "Return the label of the correct answer for the question below.\n"
        "\n"
        "Question: Sarah was a much better surgeon than Maria so _ always got the easier cases.\n"
        "Choices:\n"
        "A) Sarah\n"
        "B) Maria\n"
        "Answer:"
    )


def test_prompt_arc_numeric_keys():
    records = read_arc_or_obqa(DATA / "arc_challenge/ARC-Challenge-Dev.jsonl")
    record = next(r for r in records if r.id == "NYSEDREGENTS_2014_8_38")
    assert format_prompt("arc_challenge", record) == (
        "Return the label of the correct answer for the question below.\n"
        "\n"
        "Question: A substance in the solid phase (state) of matter has\n"
        "Choices:\n"
        "A) a definite shape and a definite volume\n"
        "B) a definite shape, but no definite volume\n"
        "C) no definite shape, but a definite volume\n"
        "D) no definite shape and no definite volume\n"
        "Answer:"
    )


def test_prompt_obqa():
    record = read_arc_or_obqa(DATA / "openbookqa/dev.jsonl")[0]
    assert record.answer == 0
    assert format_prompt("obqa", record) == (
        "Return the label of the correct answer for the question below.\n"
        "\n"
        "Question: Frilled sharks and angler fish live far beneath the surface of the ocean, "
        "which is why they are known as\n"
        "Choices:\n"
        "A) Deep sea animals\n"
        "B) fish\n"
        "C) Long Sea Fish\n"
        "D) Far Sea Animals\n"
        "Answer:"
    )


def test_prompt_mmlu_with_embedded_newline():
    record = read_mmlu_csv(DATA / "mmlu/test/college_chemistry_test.csv")[3]
    assert record.answer == 1
    assert format_prompt("mmlu_college_chemistry", record) == (
        "Return the label of the correct answer for the question below.\n"
        "\n"
        "Question: When the following equation is balanced, which of the following is true?\n"
        "__ MnO4− + __ I− + __ H+ <-> __ Mn2+ + __ IO3− + __ H2O\n"
        "Choices:\n"
        "A) The I− : IO3− ratio is 3:1.\n"
        "B) The MnO4- : I- ratio is 6:5.\n"
        "C) The MnO4- : Mn2+ ratio is 3:1.\n"
        "D) The H+ : I− ratio is 2:1.\n"
        "Answer:"
    )


def test_prompt_boolq_and_passage_truncation():
    record = read_boolq(DATA / "boolq/dev.jsonl")[8]
    assert record.answer == 0  # true
    assert format_prompt("boolq", record) == (
        "Read the passage below and answer the question with the words 'true' or 'false'.\n"
        "\n"
        "Passage: Persons driving into Canada must have their vehicle's registration document "
        "and proof of insurance.\n"
        "Question: can u drive in canada with us license\n"
        "Answer (true or false):"
    )
    long = QARecord("x", "q", ("true", "false"), ("A", "B"), 0, passage="p" * 2000 + "TAIL")
    prompt = format_prompt("boolq", long)
    assert "p" * 1024 + "\nQuestion: q\n" in prompt and "TAIL" not in prompt


# ----- bad inputs -----


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


ARC_OK = {
    "id": "q1",
    "question": {
        "stem": "s",
        "choices": [{"text": "a", "label": "1"}, {"text": "b", "label": "2"}],
    },
    "answerKey": "2",
}


def test_broken_json_line(tmp_path):
    path = _write(tmp_path, "wg.jsonl", [json.dumps({"qID": "a"}), "{not json"])
    with pytest.raises(DataFileError, match=r"wg\.jsonl: line 2: not valid JSON"):
        read_winogrande(path)


def test_missing_field(tmp_path):
    good = {"qID": "a", "sentence": "s _", "option1": "x", "option2": "y", "answer": "1"}
    bad = {k: v for k, v in good.items() if k != "option2"}
    path = _write(tmp_path, "wg.jsonl", [json.dumps(good), "", json.dumps(bad)])
    with pytest.raises(DataFileError, match=r"wg\.jsonl: line 3: missing field 'option2'"):
        read_winogrande(path)
    path = _write(
        tmp_path, "arc.jsonl", [json.dumps({k: v for k, v in ARC_OK.items() if k != "id"})]
    )
    with pytest.raises(DataFileError, match=r"arc\.jsonl: line 1: missing field 'id'"):
        read_arc_or_obqa(path)
    path = _write(tmp_path, "bq.jsonl", [json.dumps({"question": "q", "answer": True})])
    with pytest.raises(DataFileError, match=r"bq\.jsonl: line 1: missing field 'passage'"):
        read_boolq(path)


def test_wrong_types_and_values(tmp_path):
    path = _write(
        tmp_path, "bq.jsonl", [json.dumps({"question": "q", "answer": "true", "passage": "p"})]
    )
    with pytest.raises(DataFileError, match=r"bq\.jsonl: line 1: field 'answer' must be bool"):
        read_boolq(path)
    row = {"qID": "a", "sentence": "s _", "option1": "x", "option2": "y", "answer": 2}
    path = _write(tmp_path, "wg.jsonl", [json.dumps(row)])
    with pytest.raises(DataFileError, match=r"wg\.jsonl: line 1: field 'answer' must be str"):
        read_winogrande(path)
    path = _write(tmp_path, "wg.jsonl", [json.dumps(row | {"answer": "3"})])
    with pytest.raises(DataFileError, match=r"wg\.jsonl: line 1: answer must be \"1\" or \"2\""):
        read_winogrande(path)


def test_answer_key_not_among_labels(tmp_path):
    assert read_arc_or_obqa(_write(tmp_path, "ok.jsonl", [json.dumps(ARC_OK)]))[0].answer == 1
    path = _write(
        tmp_path, "arc.jsonl", [json.dumps(ARC_OK), json.dumps(ARC_OK | {"answerKey": "B"})]
    )
    with pytest.raises(
        DataFileError, match=r"arc\.jsonl: line 2: answer key 'B' is not among the choice labels"
    ):
        read_arc_or_obqa(path)


def test_bad_mmlu_rows_and_missing_file(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('"multi\nline q",a,b,c,d,A\nq2,a,b,c,d,E\n', encoding="utf-8")
    with pytest.raises(
        DataFileError, match=r"m\.csv: record 2 \(line 3\): answer must be one of A-D"
    ):
        read_mmlu_csv(path)
    path.write_text("q,a,b,c,A\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"m\.csv: record 1 \(line 1\): expected 6 columns"):
        read_mmlu_csv(path)
    with pytest.raises(DataFileError, match=r"absent\.jsonl: no such file"):
        read_boolq(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="empty"):
        read_boolq(tmp_path / "empty.jsonl")
