"""The STS-B reader on the real files of the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from bayeshead.data.stsb import load_stsb, read_stsb, stsb_path
from bayeshead.data.textfile import DataFileError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize(
    "split, counts",
    [
        ("train", {"captions": 2000, "news": 3299, "forum": 450}),
        ("dev", {"captions": 625, "news": 500, "forum": 375}),
        ("test", {"captions": 625, "news": 500, "forum": 254}),
    ],
)
def test_rows_and_genres_match_the_release(split, counts):
    pairs = read_stsb(stsb_path(split, DATA))
    assert len(pairs) == sum(counts.values())
    assert {g: sum(p.genre == g for p in pairs) for g in counts} == counts
    assert all(0.0 <= p.score <= 5.0 for p in pairs)


def test_first_train_pair_and_quotes_are_text():
    data = load_stsb("train", DATA)
    assert data.target_type == "regression" and data.is_paired and len(data) == 5749
    assert (data.texts[0], data.text_pair[0], data.labels[0].item()) == (
        "A plane is taking off.",
        "An air plane is taking off.",
        5.0,
    )
    assert any('"' in t for t in data.texts + data.text_pair)  # not swallowed as CSV quoting


def test_genre_filter_gives_the_shift_split():
    forum = load_stsb("test", DATA, genres={"forum"})
    rest = load_stsb("test", DATA, genres=["captions", "news"])
    assert len(forum) == 254 and len(rest) == 1125 and forum.name == "stsb/test/forum"
    with pytest.raises(ValueError, match="subset"):
        load_stsb("test", DATA, genres={"tweets"})


def test_malformed_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "stsb" / "sts-dev.csv"
    bad.parent.mkdir()
    bad.write_text("main-news\tf\t2012\t1\t3.0\ta\tb\nmain-news\tf\t2012\t2\thigh\ta\tb\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="sts-dev.csv: line 2: score 'high'"):
        load_stsb("dev", tmp_path)
    bad.write_text("main-news\tf\t2012\t1\t7.5\ta\tb\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"line 1: score 7.5 is outside \[0, 5\]"):
        load_stsb("dev", tmp_path)
