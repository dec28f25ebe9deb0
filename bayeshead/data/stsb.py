"""STS Benchmark (Cer et al., "SemEval-2017 Task 1: Semantic Textual Similarity", SemEval 2017):
English sentence pairs with a human similarity score in [0, 5].

Files ``stsb/sts-{train,dev,test}.csv`` of the benchmark data folder: tab-separated UTF-8, no
header, columns genre, source file, year, id, score, sentence1, sentence2 (some lines carry one
or two trailing source columns, ignored). Fields are split on tabs only: sentences contain
double quotes that are text, not CSV quoting. Genres are normalised to ``captions``, ``news``
and ``forum`` (the release spells the forum genre ``main-forum`` in train and ``main-forums`` in
dev and test). Rows: train 5,749, dev 1,500, test 1,379.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from bayeshead.data.dataset import TextDataset
from bayeshead.data.textfile import DataFileError, read_text_file
from bayeshead.errors import UserInputError

__all__ = ["STSB_SPLITS", "STSB_GENRES", "STSPair", "stsb_path", "read_stsb", "load_stsb"]

STSB_SPLITS = ("train", "dev", "test")
STSB_GENRES = ("captions", "news", "forum")
_GENRE_NAMES = {
    "main-captions": "captions",
    "main-news": "news",
    "main-forum": "forum",
    "main-forums": "forum",
}


@dataclass(frozen=True)
class STSPair:
    """One STS-B row: the two sentences, the gold score in [0, 5] and the normalised genre."""

    sentence1: str
    sentence2: str
    score: float
    genre: str
    source: str
    line: int


def stsb_path(split: str, data_dir: str | Path | None = None) -> Path:
    """``<data_dir>/stsb/sts-<split>.csv``; ``data_dir`` defaults to ``$BAYESHEAD_DATA`` or
    ``../shared/data``."""
    if split not in STSB_SPLITS:
        raise UserInputError(f"STS-B split must be one of {STSB_SPLITS}, got {split!r}")
    if data_dir is None:
        from bayeshead.tasks.splits import default_data_dir

        data_dir = default_data_dir()
        if data_dir is None:
            raise DataFileError(
                "no benchmark data folder: pass data_dir (the folder holding stsb/) or set $BAYESHEAD_DATA"
            )
    return Path(data_dir) / "stsb" / f"sts-{split}.csv"


def read_stsb(path: str | Path) -> list[STSPair]:
    """Every row of one STS-B file; a malformed row is a :class:`DataFileError` naming file and line."""
    path = Path(path)
    pairs = []
    for number, line in enumerate(read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 7:
            raise DataFileError(
                f"{path}: line {number}: {len(fields)} tab-separated fields, expected at least 7 "
                "(genre, file, year, id, score, sentence1, sentence2)"
            )
        genre = _GENRE_NAMES.get(fields[0])
        if genre is None:
            raise DataFileError(f"{path}: line {number}: unknown genre {fields[0]!r}; expected one of {sorted(_GENRE_NAMES)}")
        try:
            score = float(fields[4])
        except ValueError:
            raise DataFileError(f"{path}: line {number}: score {fields[4]!r} is not a number") from None
        if not (math.isfinite(score) and 0.0 <= score <= 5.0):
            raise DataFileError(f"{path}: line {number}: score {score} is outside [0, 5]")
        pairs.append(STSPair(fields[5], fields[6], score, genre, fields[1], number))
    if not pairs:
        raise DataFileError(f"{path}: the file has no data rows")
    return pairs


def load_stsb(
    split: str = "train",
    data_dir: str | Path | None = None,
    *,
    genres: Collection[str] | None = None,
) -> TextDataset:
    """STS-B ``split`` as a paired regression :class:`TextDataset`: ``texts`` = sentence1,
    ``text_pair`` = sentence2, ``labels`` = score (N,) float32 in [0, 5]. ``genres`` keeps only
    those genres (``captions``, ``news``, ``forum``), e.g. forum pairs as a genre shift."""
    if genres is not None:
        unknown = sorted(set(genres) - set(STSB_GENRES))
        if unknown or not genres:
            raise UserInputError(f"genres must be a non-empty subset of {STSB_GENRES}, got {sorted(genres)}")
    pairs = read_stsb(stsb_path(split, data_dir))
    if genres is not None:
        pairs = [p for p in pairs if p.genre in genres]
    suffix = "" if genres is None else "/" + "+".join(g for g in STSB_GENRES if g in genres)
    return TextDataset(
        texts=[p.sentence1 for p in pairs],
        labels=torch.tensor([p.score for p in pairs], dtype=torch.float32),
        name=f"stsb/{split}{suffix}",
        target_type="regression",
        text_pair=[p.sentence2 for p in pairs],
    )
