"""The common-sense QA tasks from the Hugging Face hub (bayeshead.tasks.hub) and the fallback of
load_task to it, with a fake ``load_dataset`` serving rows in the hub schemas: no network and no
``datasets`` package needed. The comparisons with the file readers use ../shared/data (beside the checkout, as
in CI)."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from bayeshead.data.textfile import DataFileError
from bayeshead.errors import UserInputError
from bayeshead.tasks import (
    HUB_SOURCES,
    TASK_FILES,
    HubSource,
    QARecord,
    format_prompt,
    load_task,
    load_task_from_hub,
    read_arc_or_obqa,
    read_boolq,
    read_mmlu_csv,
    read_winogrande,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

AB = ("A", "B")
ABCD = ("A", "B", "C", "D")


class FakeHub:
    """``load_dataset(path, name, split=...)`` over a dict ``(path, name, split) -> rows``."""

    def __init__(self, rows: dict[tuple[str, str | None, str], list[dict[str, Any]]]):
        self.rows = rows
        self.calls: list[tuple[str, str | None, str]] = []

    def __call__(self, path: str, name: str | None = None, *, split: str) -> list[dict[str, Any]]:
        self.calls.append((path, name, split))
        if (path, name, split) not in self.rows:
            raise FileNotFoundError(f"no split {split!r} of {path} {name}")
        return [
            dict(row) if isinstance(row, dict) else row for row in self.rows[(path, name, split)]
        ]


# ----- rows in the hub schemas, and the records they must become -----

WG_DEV = [
    {"sentence": "Ann asked Mary _ to lunch.", "option1": "Ann", "option2": "Mary", "answer": "2"},
    {"sentence": "The cup beat the jar because _ was big.", "option1": "cup", "option2": "jar",
     "answer": "1"},
]  # fmt: skip
WG_S_TRAIN = [{"sentence": "S _ s.", "option1": "x", "option2": "y", "answer": "1"}]
WG_M_TRAIN = WG_S_TRAIN + [{"sentence": "M _ m.", "option1": "p", "option2": "q", "answer": "2"}]

ARC_C_TRAIN = [
    {"id": "Mercury_1", "question": "Which is a gas?",
     "choices": {"text": ["ice", "steam", "rock", "wood"], "label": ["A", "B", "C", "D"]},
     "answerKey": "B"},
]  # fmt: skip
ARC_C_DEV = [
    # numeric labels and key: "3" is the third option
    {"id": "NYSED_1", "question": "Pick three.",
     "choices": {"text": ["one", "two", "three", "four"], "label": ["1", "2", "3", "4"]},
     "answerKey": "3"},
    # five options, key "E"
    {"id": "TIMSS_5", "question": "Pick the last.",
     "choices": {"text": ["a", "b", "c", "d", "e"], "label": ["A", "B", "C", "D", "E"]},
     "answerKey": "E"},
    # three options
    {"id": "MCAS_3", "question": "Pick the first.",
     "choices": {"text": ["x", "y", "z"], "label": ["A", "B", "C"]}, "answerKey": "A"},
]  # fmt: skip
ARC_E_TRAIN = [
    {"id": "E_1", "question": "Numeric one.",
     "choices": {"text": ["w", "x", "y", "z"], "label": ["1", "2", "3", "4"]}, "answerKey": "1"},
]  # fmt: skip
ARC_E_DEV = [
    {"id": "E_2", "question": "Last of four.",
     "choices": {"text": ["w", "x", "y", "z"], "label": ["A", "B", "C", "D"]}, "answerKey": "D"},
]  # fmt: skip

OBQA_TRAIN = [
    {"id": "7-980", "question_stem": "The sun is responsible for",
     "choices": {"text": ["puppies", "plants sprouting", "the moon", "rain"],
                 "label": ["A", "B", "C", "D"]},
     "answerKey": "B"},
]  # fmt: skip
OBQA_DEV = [
    {"id": "8-376", "question_stem": "Sharks live",
     "choices": {"text": ["deep", "high", "dry", "far"], "label": ["A", "B", "C", "D"]},
     "answerKey": "C"},
]  # fmt: skip

BOOLQ_TRAIN = [
    {"question": "is the sky blue", "answer": True, "passage": "The sky is blue."},
    {"question": "is fire cold", "answer": False, "passage": "Fire is hot."},
]
BOOLQ_DEV = [{"question": "is ice cold", "answer": False, "passage": "Ice is warm here."}]

CHEM_TEST = [
    {"question": "Which is a noble gas?", "subject": "college_chemistry",
     "choices": ["He", "H", "O", "N"], "answer": 0},
    {"question": "Last?", "subject": "college_chemistry", "choices": ["1", "2", "3", "4"],
     "answer": 3},
]  # fmt: skip
PHYS_TEST = [
    {"question": "Speed of light?", "subject": "college_physics",
     "choices": ["1 m/s", "3e8 m/s", "5 m/s", "7 m/s"], "answer": 1},
]  # fmt: skip

HUB_ROWS = {
    ("allenai/winogrande", "winogrande_s", "train"): WG_S_TRAIN,
    ("allenai/winogrande", "winogrande_s", "validation"): WG_DEV,
    ("allenai/winogrande", "winogrande_s", "test"): [
        {"sentence": "T _ t.", "option1": "a", "option2": "b", "answer": ""}
    ],
    ("allenai/winogrande", "winogrande_m", "train"): WG_M_TRAIN,
    ("allenai/winogrande", "winogrande_m", "validation"): WG_DEV,
    ("allenai/ai2_arc", "ARC-Challenge", "train"): ARC_C_TRAIN,
    ("allenai/ai2_arc", "ARC-Challenge", "validation"): ARC_C_DEV,
    ("allenai/ai2_arc", "ARC-Easy", "train"): ARC_E_TRAIN,
    ("allenai/ai2_arc", "ARC-Easy", "validation"): ARC_E_DEV,
    ("allenai/openbookqa", "main", "train"): OBQA_TRAIN,
    ("allenai/openbookqa", "main", "validation"): OBQA_DEV,
    ("google/boolq", None, "train"): BOOLQ_TRAIN,
    ("google/boolq", None, "validation"): BOOLQ_DEV,
    ("cais/mmlu", "college_chemistry", "test"): CHEM_TEST,
    ("cais/mmlu", "college_physics", "test"): PHYS_TEST,
}

WG = "allenai/winogrande/winogrande_s"
WG_DEV_RECORDS = [
    QARecord(f"{WG}/validation/0", "Ann asked Mary _ to lunch.", ("Ann", "Mary"), AB, 1),
    QARecord(
        f"{WG}/validation/1", "The cup beat the jar because _ was big.", ("cup", "jar"), AB, 0
    ),
]
WG_M_DEV_RECORDS = [
    dataclasses.replace(r, id=r.id.replace("winogrande_s", "winogrande_m")) for r in WG_DEV_RECORDS
]
BQ = "google/boolq"
EXPECTED: dict[str, tuple[list[QARecord] | None, list[QARecord]]] = {
    "winogrande_s": (
        [QARecord(f"{WG}/train/0", "S _ s.", ("x", "y"), AB, 0)],
        WG_DEV_RECORDS,
    ),
    "winogrande_m": (
        [
            QARecord("allenai/winogrande/winogrande_m/train/0", "S _ s.", ("x", "y"), AB, 0),
            QARecord("allenai/winogrande/winogrande_m/train/1", "M _ m.", ("p", "q"), AB, 1),
        ],
        WG_M_DEV_RECORDS,
    ),
    "arc_challenge": (
        [QARecord("Mercury_1", "Which is a gas?", ("ice", "steam", "rock", "wood"), ABCD, 1)],
        [
            QARecord("NYSED_1", "Pick three.", ("one", "two", "three", "four"), ABCD, 2),
            QARecord("TIMSS_5", "Pick the last.", ("a", "b", "c", "d", "e"), ABCD + ("E",), 4),
            QARecord("MCAS_3", "Pick the first.", ("x", "y", "z"), ("A", "B", "C"), 0),
        ],
    ),
    "arc_easy": (
        [QARecord("E_1", "Numeric one.", ("w", "x", "y", "z"), ABCD, 0)],
        [QARecord("E_2", "Last of four.", ("w", "x", "y", "z"), ABCD, 3)],
    ),
    "obqa": (
        [
            QARecord(
                "7-980",
                "The sun is responsible for",
                ("puppies", "plants sprouting", "the moon", "rain"),
                ABCD,
                1,
            )
        ],
        [QARecord("8-376", "Sharks live", ("deep", "high", "dry", "far"), ABCD, 2)],
    ),
    "boolq": (
        [
            QARecord(
                f"{BQ}/train/0",
                "is the sky blue",
                ("true", "false"),
                AB,
                0,
                passage="The sky is blue.",
            ),
            QARecord(
                f"{BQ}/train/1", "is fire cold", ("true", "false"), AB, 1, passage="Fire is hot."
            ),
        ],
        [
            QARecord(
                f"{BQ}/validation/0",
                "is ice cold",
                ("true", "false"),
                AB,
                1,
                passage="Ice is warm here.",
            ),
        ],
    ),  # fmt: skip
    "mmlu_college_chemistry": (
        None,
        [
            QARecord(
                "cais/mmlu/college_chemistry/test/0",
                "Which is a noble gas?",
                ("He", "H", "O", "N"),
                ABCD,
                0,
            ),
            QARecord("cais/mmlu/college_chemistry/test/1", "Last?", ("1", "2", "3", "4"), ABCD, 3),
        ],
    ),
    "mmlu_college_physics": (
        None,
        [
            QARecord(
                "cais/mmlu/college_physics/test/0",
                "Speed of light?",
                ("1 m/s", "3e8 m/s", "5 m/s", "7 m/s"),
                ABCD,
                1,
            )
        ],
    ),
}


def test_hub_sources_match_the_task_table():
    assert set(HUB_SOURCES) == set(TASK_FILES) == set(EXPECTED)
    assert HUB_SOURCES["winogrande_s"] == HubSource(
        "allenai/winogrande", "winogrande_s", "train", "validation"
    )
    assert HUB_SOURCES["boolq"] == HubSource("google/boolq", None, "train", "validation")
    for name, source in HUB_SOURCES.items():
        assert (source.train is None) == (TASK_FILES[name].train is None), name
        assert source.eval == ("test" if name.startswith("mmlu_") else "validation"), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_task_converts_from_the_hub_schema(name):
    hub = FakeHub(HUB_ROWS)
    train, evaluation = load_task_from_hub(name, load_dataset=hub)
    expected_train, expected_eval = EXPECTED[name]
    assert train == expected_train
    assert evaluation == expected_eval
    source = HUB_SOURCES[name]
    splits = [source.eval] if source.train is None else [source.train, source.eval]
    assert hub.calls == [(source.path, source.config, split) for split in splits]


def test_boolq_online_uses_the_official_splits_not_the_dev_halves():
    train, evaluation = load_task_from_hub("boolq", load_dataset=FakeHub(HUB_ROWS))
    assert [r.answer for r in train] == [0, 1]  # true, false
    assert [r.answer for r in evaluation] == [1]  # false
    assert all(r.choices == ("true", "false") for r in train + evaluation)
    assert format_prompt("boolq", evaluation[0]) == (
        "Read the passage below and answer the question with the words 'true' or 'false'.\n"
        "\n"
        "Passage: Ice is warm here.\n"
        "Question: is ice cold\n"
        "Answer (true or false):"
    )


# ----- the same question from the hub and from the files gives the same record and prompt -----


def _from_hub(task: str, row: dict[str, Any]) -> QARecord:
    """The eval record the hub loader makes of ``row`` (served for every split of ``task``)."""
    source = HUB_SOURCES[task]
    rows = {(source.path, source.config, split): [row] for split in (source.train, source.eval)}
    return load_task_from_hub(task, load_dataset=FakeHub(rows))[1][0]


def _same(task: str, hub: QARecord, file: QARecord, *, same_id: bool) -> None:
    assert hub == (file if same_id else dataclasses.replace(file, id=hub.id))
    assert format_prompt(task, hub) == format_prompt(task, file)


def test_arc_easy_first_dev_row_matches_the_file():
    file = read_arc_or_obqa(DATA / "arc_easy/ARC-Easy-Dev.jsonl")[0]
    row = {
        "id": "MCAS_2000_4_6",
        "question": "Which technology was developed most recently?",
        "choices": {
            "text": ["cellular telephone", "television", "refrigerator", "airplane"],
            "label": ["A", "B", "C", "D"],
        },
        "answerKey": "A",
    }
    _same("arc_easy", _from_hub("arc_easy", row), file, same_id=True)


def test_arc_five_options_matches_the_file():
    file = read_arc_or_obqa(DATA / "arc_easy/ARC-Easy-Dev.jsonl")[17]  # line 18
    row = {
        "id": "TIMSS_1995_8_J5",
        "question": "Which form of solar radiation causes sunburn?",
        "choices": {
            "text": ["Visible", "Ultraviolet", "Infrared", "X-rays", "Radio waves"],
            "label": ["A", "B", "C", "D", "E"],
        },
        "answerKey": "B",
    }
    hub = _from_hub("arc_easy", row)
    assert hub.answer == 1 and len(hub.choices) == 5
    _same("arc_easy", hub, file, same_id=True)


def test_arc_numeric_key_matches_the_file():
    records = read_arc_or_obqa(DATA / "arc_challenge/ARC-Challenge-Dev.jsonl")
    file = next(r for r in records if r.id == "NYSEDREGENTS_2014_8_20")
    row = {
        "id": "NYSEDREGENTS_2014_8_20",
        "question": "The equation below shows the products formed when a solution of silver "
        "nitrate (AgNO3) reacts with a solution of sodium chloride (NaCl). AgNO3 \x02+ NaCl "
        "(Reactants) -> NaNO3 \x02+ AgCl (Products) In this equation, the total mass of the "
        "reactants is",
        "choices": {
            "text": [
                "greater than the total mass of the products",
                "equal to the total mass of the products",
                "equal to the mass of AgCl",
                "less than the mass of AgCl",
            ],
            "label": ["1", "2", "3", "4"],
        },
        "answerKey": "2",
    }
    hub = _from_hub("arc_challenge", row)
    assert hub.answer == 1 and hub.labels == ABCD
    _same("arc_challenge", hub, file, same_id=True)


def test_obqa_first_dev_row_matches_the_file():
    file = read_arc_or_obqa(DATA / "openbookqa/dev.jsonl")[0]
    row = {
        "id": "8-376",
        "question_stem": "Frilled sharks and angler fish live far beneath the surface of the "
        "ocean, which is why they are known as",
        "choices": {
            "text": ["Deep sea animals", "fish", "Long Sea Fish", "Far Sea Animals"],
            "label": ["A", "B", "C", "D"],
        },
        "answerKey": "A",
    }
    _same("obqa", _from_hub("obqa", row), file, same_id=True)


@pytest.mark.parametrize("task", ["winogrande_s", "winogrande_m"])
def test_winogrande_first_dev_row_matches_the_file(task):
    file = read_winogrande(DATA / "winogrande/dev.jsonl")[0]
    row = {
        "sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
        "option1": "Sarah",
        "option2": "Maria",
        "answer": "2",
    }
    hub = _from_hub(task, row)
    assert hub.answer == 1 and hub.id == f"allenai/winogrande/{task}/validation/0"
    _same(task, hub, file, same_id=False)


def test_boolq_dev_row_matches_the_file():
    file = read_boolq(DATA / "boolq/dev.jsonl")[8]
    row = {
        "question": "can u drive in canada with us license",
        "answer": True,
        "passage": "Persons driving into Canada must have their vehicle's registration document "
        "and proof of insurance.",
    }
    hub = _from_hub("boolq", row)
    assert hub.answer == 0
    _same("boolq", hub, file, same_id=False)
    # and the raw dev line itself, read as a hub row (its extra `title` column is ignored)
    raw = json.loads((DATA / "boolq/dev.jsonl").read_text(encoding="utf-8").splitlines()[0])
    first = read_boolq(DATA / "boolq/dev.jsonl")[0]
    assert first.answer == 1  # false
    _same("boolq", _from_hub("boolq", raw), first, same_id=False)


def test_mmlu_rows_match_the_file():
    file = read_mmlu_csv(DATA / "mmlu/test/college_chemistry_test.csv")[3]
    row = {
        "question": "When the following equation is balanced, which of the following is true?\n"
        "__ MnO4− + __ I− + __ H+ <-> __ Mn2+ + __ IO3− + __ H2O",
        "subject": "college_chemistry",
        "choices": [
            "The I− : IO3− ratio is 3:1.",
            "The MnO4- : I- ratio is 6:5.",
            "The MnO4- : Mn2+ ratio is 3:1.",
            "The H+ : I− ratio is 2:1.",
        ],
        "answer": 1,
    }
    _same("mmlu_college_chemistry", _from_hub("mmlu_college_chemistry", row), file, same_id=False)
    file = read_mmlu_csv(DATA / "mmlu/test/college_physics_test.csv")[1]
    row = {
        "question": "White light is normally incident on a puddle of water (index of refraction "
        "1.33). A thin (500 nm) layer of oil (index of refraction 1.5) floats on the surface of "
        "the puddle. Of the following, the most strongly reflected wavelength is",
        "subject": "college_physics",
        "choices": ["500 nm", "550 nm", "600 nm", "650 nm"],
        "answer": 2,
    }
    hub = _from_hub("mmlu_college_physics", row)
    assert hub.answer == 2
    _same("mmlu_college_physics", hub, file, same_id=False)


# ----- malformed rows and loader failures -----


def _one_row(task: str, row: Any, split: str = "eval") -> FakeHub:
    rows = dict(HUB_ROWS)
    source = HUB_SOURCES[task]
    rows[(source.path, source.config, getattr(source, split))] = [row]
    return FakeHub(rows)


ARC_OK = ARC_E_DEV[0]


@pytest.mark.parametrize(
    ("task", "row", "message"),
    [
        (
            "arc_easy",
            ARC_OK | {"answerKey": "F"},
            r"allenai/ai2_arc \(ARC-Easy\), split 'validation', row 0: answer key 'F' is not "
            r"among the choice labels \['A', 'B', 'C', 'D'\]",
        ),
        (
            "arc_easy",
            ARC_OK | {"choices": {"text": ["a", "b"], "label": ["A", "B", "C"]}},
            r"row 0: 2 choice texts but 3 choice labels",
        ),
        (
            "arc_easy",
            ARC_OK | {"choices": {"text": ["a", "b"], "label": ["A", "A"]}},
            r"row 0: repeated choice labels",
        ),
        (
            "arc_easy",
            ARC_OK | {"choices": [{"text": "a", "label": "A"}]},
            r"row 0: field 'choices' must be Mapping, got list",
        ),
        (
            "arc_easy",
            ARC_OK | {"choices": {"text": ["a", 2], "label": ["A", "B"]}},
            r"row 0: choices: text\[1\] must be str, got int",
        ),
        (
            "obqa",
            {k: v for k, v in OBQA_DEV[0].items() if k != "question_stem"},
            r"allenai/openbookqa \(main\), split 'validation', row 0: missing field "
            r"'question_stem'",
        ),
        (
            "winogrande_s",
            WG_DEV[0] | {"answer": ""},
            r"allenai/winogrande \(winogrande_s\), split 'validation', row 0: answer must be "
            r"\"1\" or \"2\", got ''",
        ),
        (
            "boolq",
            BOOLQ_DEV[0] | {"answer": "false"},
            r"google/boolq, split 'validation', row 0: field 'answer' must be bool, got str",
        ),
        (
            "mmlu_college_physics",
            PHYS_TEST[0] | {"answer": 4},
            r"cais/mmlu \(college_physics\), split 'test', row 0: answer index must be 0-3",
        ),
        (
            "mmlu_college_physics",
            PHYS_TEST[0] | {"answer": True},
            r"row 0: field 'answer' must be int, got bool",
        ),
        (
            "mmlu_college_physics",
            PHYS_TEST[0] | {"choices": ["a", "b", "c"]},
            r"row 0: expected 4 options \(A-D\), got 3",
        ),
        ("mmlu_college_physics", ["not", "a", "row"], r"row 0: expected a mapping of columns"),
    ],
)
def test_malformed_rows_name_dataset_split_row_and_problem(task, row, message):
    with pytest.raises(DataFileError, match=message):
        load_task_from_hub(task, load_dataset=_one_row(task, row))


def test_later_bad_row_and_train_split_are_named():
    rows = dict(HUB_ROWS)
    rows[("allenai/ai2_arc", "ARC-Easy", "train")] = ARC_E_TRAIN + [ARC_OK | {"answerKey": "Z"}]
    with pytest.raises(DataFileError, match=r"\(ARC-Easy\), split 'train', row 1: answer key 'Z'"):
        load_task_from_hub("arc_easy", load_dataset=FakeHub(rows))


def test_empty_split_and_failing_loader():
    rows = dict(HUB_ROWS)
    rows[("cais/mmlu", "college_physics", "test")] = []
    with pytest.raises(
        DataFileError, match=r"cais/mmlu \(college_physics\), split 'test': .*no rows"
    ):
        load_task_from_hub("mmlu_college_physics", load_dataset=FakeHub(rows))

    def offline(path, name=None, *, split):
        raise ConnectionError("hub unreachable")

    with pytest.raises(
        UserInputError,
        match=r"could not load google/boolq, split 'train', from the Hugging Face hub "
        r"\(ConnectionError: hub unreachable\); pass --data-dir or set BAYESHEAD_DATA",
    ):
        load_task_from_hub("boolq", load_dataset=offline)
    with pytest.raises(UserInputError, match="unknown task 'arc'; known tasks: arc_challenge"):
        load_task_from_hub("arc", load_dataset=offline)


# ----- load_task: files, hub, or the hub when no data directory is found -----

MISSING_DATASETS = (
    r"no data directory was found and `datasets` is not installed: either pass --data-dir or "
    r"set BAYESHEAD_DATA to the benchmark data folder .*`pip install datasets` \(and be online\)"
)


@pytest.fixture
def no_data_dir(tmp_path, monkeypatch):
    """A working directory without ../shared/data and no $BAYESHEAD_DATA."""
    monkeypatch.delenv("BAYESHEAD_DATA", raising=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


@pytest.fixture
def fake_datasets(monkeypatch):
    """A stand-in ``datasets`` module whose ``load_dataset`` is a :class:`FakeHub`."""
    hub = FakeHub(HUB_ROWS)
    module = types.ModuleType("datasets")
    module.load_dataset = hub  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)
    return hub


def _write_obqa_files(root: Path) -> None:
    row = {
        "id": "f-1",
        "question": {
            "stem": "From a file?",
            "choices": [{"text": "yes", "label": "A"}, {"text": "no", "label": "B"}],
        },
        "answerKey": "A",
    }
    (root / "openbookqa").mkdir(parents=True)
    for name in ("train.jsonl", "dev.jsonl"):
        (root / "openbookqa" / name).write_text(json.dumps(row) + "\n", encoding="utf-8")


FILE_RECORD = QARecord("f-1", "From a file?", ("yes", "no"), AB, 0)


def test_load_task_falls_back_to_the_hub_without_a_data_dir(no_data_dir, fake_datasets):
    assert load_task("obqa") == EXPECTED["obqa"]
    assert load_task("boolq") == EXPECTED["boolq"]  # official splits, not dev halves
    assert load_task("mmlu_college_physics") == EXPECTED["mmlu_college_physics"]
    assert fake_datasets.calls[:2] == [
        ("allenai/openbookqa", "main", "train"),
        ("allenai/openbookqa", "main", "validation"),
    ]


def test_load_task_fallback_without_datasets_installed(no_data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(UserInputError, match=MISSING_DATASETS):
        load_task("obqa")
    with pytest.raises(UserInputError, match=MISSING_DATASETS):
        load_task_from_hub("obqa")


def test_source_files_never_uses_the_hub(no_data_dir, fake_datasets):
    with pytest.raises(UserInputError, match="no data directory found: pass --data-dir or set"):
        load_task("obqa", source="files")
    _write_obqa_files(no_data_dir / "data")
    assert load_task("obqa", no_data_dir / "data", source="files") == ([FILE_RECORD], [FILE_RECORD])
    assert fake_datasets.calls == []


def test_a_named_directory_that_is_missing_stays_an_error(no_data_dir, fake_datasets, monkeypatch):
    with pytest.raises(UserInputError, match=r"nowhere is not a directory: pass --data-dir"):
        load_task("obqa", no_data_dir / "nowhere")
    monkeypatch.setenv("BAYESHEAD_DATA", str(no_data_dir / "nowhere"))
    with pytest.raises(UserInputError, match=r"nowhere is not a directory"):
        load_task("obqa")
    assert fake_datasets.calls == []


def test_auto_prefers_files_and_source_hub_always_uses_the_hub(
    no_data_dir, fake_datasets, monkeypatch
):
    _write_obqa_files(no_data_dir / "data")
    monkeypatch.setenv("BAYESHEAD_DATA", str(no_data_dir / "data"))
    assert load_task("obqa") == ([FILE_RECORD], [FILE_RECORD])
    assert load_task("obqa", no_data_dir / "data") == ([FILE_RECORD], [FILE_RECORD])
    assert fake_datasets.calls == []
    assert load_task("obqa", source="hub") == EXPECTED["obqa"]
    with pytest.raises(UserInputError, match="source 'hub' were both given"):
        load_task("obqa", no_data_dir / "data", source="hub")
    with pytest.raises(UserInputError, match="unknown task source 'web'; expected one of auto"):
        load_task("obqa", source="web")  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="unknown task 'arc'"):
        load_task("arc", source="hub")
